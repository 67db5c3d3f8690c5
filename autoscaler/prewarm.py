"""Pre-warming: the replicas the forecast needs before a replica started now could serve.

A replica asked for now serves after the cold start, and this decision reaches the scale target
after the decision delay (metric scrape, HPA sync), so the forecast is read over
[now, now + cold start + decision delay]: with a 120 s cold start and 30 s delay, a peak forecast
for now + 150 s is provisioned now, which is the latest moment that still has it ready in time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from autoscaler.decision import Decision, Reason
from autoscaler.objective import OperatingPoint
from autoscaler.observations import Observations
from autoscaler.policy import OBJECTIVE_QUANTILES, ScalingPolicy
from autoscaler.reactive import replicas_for_total, usable_value
from forecasting.forecast import Forecast
from forecasting.model import ScalingGoal


@dataclass(frozen=True, slots=True)
class Prewarm:
    """`rps` is the rate provisioned for (after trust and headroom); `replicas` what it needs;
    `floor_replicas` what the floor quantile needs (None when that path is unusable)."""

    replicas: int
    rps: float
    trust: float
    lead_seconds: float
    floor_replicas: int | None = None


def lead_seconds(observations: Observations, policy: ScalingPolicy) -> float:
    return lead_for(observations.cold_start_seconds, policy)


def lead_for(cold_start_seconds: float | None, policy: ScalingPolicy) -> float:
    """Look-ahead: the learned cold start (the policy's default until one is learned) plus delay."""
    cold_start = cold_start_seconds
    if cold_start is None or not math.isfinite(cold_start) or cold_start < 0:
        cold_start = policy.default_cold_start_seconds
    return cold_start + policy.decision_delay_seconds


def scaling_goal(policy: ScalingPolicy, cold_start_seconds: float | None) -> ScalingGoal | None:
    """What a model that chooses by cost is told at a refit: the objective, the capacity held per
    unit of forecast (as prewarm() provisions it) and the lead it reads; None without an
    objective, or with both quantiles fixed by an expert (nothing is chosen to meet it)."""
    objective = policy.objective_unserved_share
    if objective is None or (
        policy.forecast_quantile is not None and policy.forecast_floor_quantile is not None
    ):
        return None
    return ScalingGoal(
        unserved_share=objective,
        headroom=(1 + policy.forecast_headroom) / policy.target_utilization,
        lead_seconds=lead_for(cold_start_seconds, policy),
        quantiles=OBJECTIVE_QUANTILES,
    )


def forecast_trust(trailing_error: float | None, max_error: float) -> float:
    """How far to follow the forecast, from its recent relative error.

    Full trust up to half of `max_error`, then linearly down to none at `max_error`: with the
    default 0.5, an error of 0.25 gives 1.0, 0.375 gives 0.5, 0.5 and above give 0. The flat part
    keeps ordinary noise (10-20 % error on bursty traffic) from shaving every pre-warm; the ramp
    avoids a cliff where one noisy hour flips pre-warming off entirely. Unscored forecasts (None)
    are trusted: the reactive floor still bounds a bad one from below.
    """
    if trailing_error is None:
        return 1.0
    if not math.isfinite(trailing_error):
        return 0.0
    half = max_error / 2
    return min(1.0, max(0.0, (max_error - trailing_error) / half))


def prewarm(
    now: float,
    observations: Observations,
    forecast: Forecast | None,
    policy: ScalingPolicy,
    point: OperatingPoint,
) -> Prewarm | None:
    """Replicas for the forecast peak over the lead window at `point.forecast`, and the floor
    at `point.floor`; None when there is no usable forecast (absent, not covering the window,
    all NaN, or negative) or no capacity to convert a rate into replicas."""
    per_replica = policy.target_rps_per_replica
    if forecast is None or per_replica is None:
        return None
    lead = lead_seconds(observations, policy)
    peak = _usable_peak(forecast, now, lead, point.forecast)
    if peak is None:
        return None
    # A forecast read from a few minutes of a new workload's history is a small sample of the
    # hour its model reads: its trust grows with the share of that hour it has seen, so that
    # until then the pull to the load and HPA's scale-down window keep what the young quantiles
    # would take away (Azure code at 120 s: a floor read off 11 minutes dropped a replica that
    # the burst three minutes later needed).
    trust = forecast.maturity * forecast_trust(forecast.trailing_error, policy.max_forecast_error)
    load = usable_value(observations.load, now, policy.stale_after_seconds)
    rps = _provisioned_rps(peak, trust, load, policy)
    floor_peak = _usable_peak(forecast, now, lead, point.floor)
    floor_replicas = None
    if floor_peak is not None:
        floor_rps = _provisioned_rps(floor_peak, trust, load, policy)
        floor_replicas = replicas_for_total(floor_rps, per_replica)
    return Prewarm(replicas_for_total(rps, per_replica), rps, trust, lead, floor_replicas)


def _usable_peak(forecast: Forecast, now: float, lead: float, quantile: float) -> float | None:
    peak = forecast.peak(now, now + lead, quantile)
    return peak if peak is not None and math.isfinite(peak) and peak >= 0 else None


def _provisioned_rps(peak: float, trust: float, load: float | None, policy: ScalingPolicy) -> float:
    # Distrust pulls the forecast towards what is measured now, not towards zero: at trust 0.5, a
    # load of 100 rps and a forecast of 200 rps provision for 150 rps.
    trusted = trust * peak if load is None else load + trust * (peak - load)
    return max(0.0, trusted) * (1 + policy.forecast_headroom)


def prewarm_floor(decision: Decision) -> int | None:
    """The floor direct pre-warm holds: the decision's count while the forecast is what drives it
    (the load has not arrived yet), None otherwise, which hands the floor back to its owner."""
    forecast_bound = decision.reason in (Reason.FORECAST, Reason.FORECAST_LEARNED_CAPACITY)
    return decision.replicas if forecast_bound else None

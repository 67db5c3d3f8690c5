"""Scale to zero and back: when a workload with `min_replicas: 0` may lose its last replica, and
when the first must come back.

A GPU replica that idles for hours is the largest waste, and a request that arrives at zero
replicas waits a whole cold start. So the forecast decides, at the objective's quantile (the
floor quantile autoscaler.objective chooses):
- the last replica may go only when the live load and the forecast over the next two leads (a
  cold start plus the decision delay, and as much again as the margin) are at or below the
  activation threshold: a forecast that expects demand just past one lead would release a
  replica only to ask it back a few ticks later, paying the cold start it was kept to avoid;
- at zero, the first comes back as soon as the live load, or the forecast over one lead, is
  above the threshold: one cold start ahead of the forecast demand, which is what KEDA's
  IsActive carries (metrics_adapter: active while the decision wants a replica).
The two windows differ on purpose: the margin is hysteresis, so a forecast hovering at one
lead's distance does not flap the last replica.

A request that arrives at zero is unserved for a whole cold start, and on sparse traffic no
forecast knows when the next one comes (a quantile of the per-minute rate is 0 on a stream where
fewer than one minute in a hundred sees a request, yet one arrives every two hours). So the last
replica also stays while the trailing unserved share is above the objective
(`within_objective`: what going to zero cost is what the objective counts): on a workload that
declares 0.1 % and gets a few hundred requests a day, one miss keeps the replica about a day.

The threshold (`activation_utilization` of one replica's target load, like KEDA's
`activationTargetValue`) keeps rare noise (a probe, one stray request an hour, a forecast
quantile of 0.001 rps) from keeping a replica warm. Missing or stale load, or no usable
forecast, never takes the last replica away; at zero, missing load brings none back on its own
(the other signals still can).

Example: target 10 rps per replica, activation 0.05 -> threshold 0.5 rps; lead 150 s. One
replica, load 0.1 rps, the floor quantile's peak over the next 300 s 0.2 rps -> IDLE (it may go).
At zero, the same quantile's peak over the next 150 s 3 rps -> EXPECTED (one replica now).
"""

from __future__ import annotations

import math
from enum import StrEnum

from autoscaler.observations import Observations
from autoscaler.policy import ScalingPolicy
from autoscaler.prewarm import lead_seconds
from autoscaler.reactive import usable_value
from forecasting.forecast import Forecast

# The margin beyond the lead that must be quiet too, in leads (see the module docstring).
MARGIN_LEADS = 1.0


class Zero(StrEnum):
    """What the rule says of the 0-or-1 boundary; it says nothing of counts above one."""

    IDLE = "idle"  # no replica is needed: the count may go (or stay) at zero
    DEMAND = "demand"  # at least one replica: the live load is above the threshold
    EXPECTED = "expected"  # at least one replica: the forecast expects demand within the window
    OVER_OBJECTIVE = "over_objective"  # keep one: the trailing unserved share is above the objective
    HOLD = "hold"  # the load or the forecast is missing: zero stays zero, one stays one


def activation_rps(policy: ScalingPolicy) -> float:
    """The rate at or below which demand counts as none: `activation_utilization` of one
    replica's target load; 0 while no capacity is known (any demand then counts)."""
    per_replica = policy.target_rps_per_replica
    return 0.0 if per_replica is None else policy.activation_utilization * per_replica


def scale_to_zero(
    now: float,
    observations: Observations,
    forecast: Forecast | None,
    policy: ScalingPolicy,
    quantile: float,
    current: int,
    within_objective: bool = True,
) -> Zero | None:
    """The rule's verdict for a workload at `current` replicas, reading the forecast at
    `quantile`, `within_objective` whether the trailing unserved share (and TTFT attainment,
    with a latency objective) meets the objective; None when `min_replicas` is above zero (the
    rule is off)."""
    if policy.min_replicas > 0:
        return None
    threshold = activation_rps(policy)
    load = usable_value(observations.load, now, policy.stale_after_seconds)
    if load is not None and load > threshold:
        return Zero.DEMAND
    lead = lead_seconds(observations, policy)
    window = lead if current == 0 else lead * (1 + MARGIN_LEADS)
    peak = None if forecast is None else forecast.peak(now, now + window, quantile)
    usable = peak is not None and math.isfinite(peak) and peak >= 0
    if usable and peak is not None and peak > threshold:
        return Zero.EXPECTED
    if load is None:
        return Zero.HOLD
    if current == 0:
        # A missing forecast only means none can pre-warm: the live load still says idle.
        return Zero.IDLE
    if not usable:
        return Zero.HOLD
    return Zero.IDLE if within_objective else Zero.OVER_OBJECTIVE

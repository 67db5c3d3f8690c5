"""The replay's own policies: static-peak and oracle (planned over the whole trace) and predictive
(the real `autoscaler.decide` ticked like HPA, fed by a registered forecaster that sees only the past).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import maximum_filter1d, minimum_filter1d

from autoscaler.decide import decide
from autoscaler.decision import DecisionState
from autoscaler.observations import Observations, Reading
from autoscaler.policy import ScalingPolicy
from forecasting import Forecast
from forecasting.model import FittedForecaster, Forecaster
from simulator.replay import Occupancy, ReplaySettings
from simulator.view import ClusterView

DAY_SECONDS = 86_400


class StaticPeak:
    """A fixed fleet sized for the trace's peak: never violates, never scales, costs the most."""

    name = "static-peak"

    def plan(self, demand_rps: np.ndarray, settings: ReplaySettings) -> Occupancy:
        peak = float(np.nanmax(demand_rps)) if np.any(~np.isnan(demand_rps)) else 0.0
        replicas = np.full(len(demand_rps), settings.replicas_for(np.array([peak]))[0], dtype=np.int64)
        return Occupancy(self.name, replicas, replicas.copy())


class Oracle:
    """Knows future demand and the cold start: the cheapest fleet with zero violation.

    need(t) = ceil(demand(t) / target per replica). A pod serving at u was created by u - C (C =
    cold start) and, since removed pods never come back, existed throughout [u - C, u]. So at any t
    at least need(u) pods exist for every u in [t, t + C]: provisioned(t) >= max need over
    [t, t + C], and the oracle provisions exactly that bound, second by second, so no policy with
    zero violation can cost less. It is feasible: removing the newest pod first, the pods alive
    throughout [t - C, t] number min provisioned over that span >= need(t) (every s in it has
    t in [s, s + C]), and all of them are ready at t. Example, C = 2, need 1,1,1,3,1: provisioned
    1,3,3,3,1 (scale-up exactly one cold start early), ready 1,1,1,3,1. The trace's first C seconds
    start from pods assumed ready, as every policy's initial pods are.
    """

    name = "oracle"

    def plan(self, demand_rps: np.ndarray, settings: ReplaySettings) -> Occupancy:
        need = settings.replicas_for(demand_rps)
        span = settings.cold_start_seconds + 1
        # With this origin the filters see the trailing window [i - C, i]; the forward window
        # [i, i + C] is the trailing one on the reversed series. Edges repeat the nearest value.
        trailing = (span - 1) - span // 2
        provisioned = maximum_filter1d(need[::-1], size=span, origin=trailing, mode="nearest")[::-1]
        ready = minimum_filter1d(provisioned, size=span, origin=trailing, mode="nearest")
        return Occupancy(self.name, ready, provisioned)


@dataclass
class PredictiveAutoscaler:
    """`autoscaler.decide` ticked every `tick_seconds`, seeing load through the same pipeline as
    HPA (delay and window) and a forecast refitted every `refit_seconds` and predicted from the
    history visible at each tick (steps ending by now - delay: no look-ahead)."""

    policy: ScalingPolicy
    forecaster: Forecaster
    cold_start_seconds: float
    tick_seconds: float = 15.0
    metrics_delay_seconds: float = 15.0
    metrics_window_seconds: float = 60.0
    history_step_seconds: float = 60.0
    history_window_seconds: float = 8 * DAY_SECONDS
    refit_seconds: float = 3600.0
    name: str = "predictive"
    _state: DecisionState = field(default_factory=DecisionState)
    _fitted: FittedForecaster | None = None
    _fitted_at: float | None = None
    _forecast: Forecast | None = None
    _forecast_step: int | None = None
    _first_tick: float | None = None
    _points: list[tuple[float, float]] = field(default_factory=list)

    def step(self, view: ClusterView) -> int:
        forecast = self._forecast_at(view)
        rate = view.metrics.rate(view.now, self.metrics_window_seconds, self.metrics_delay_seconds)
        observations = Observations(
            at=view.now,
            current_replicas=view.spec_replicas,
            ready_replicas=view.ready_replicas,
            load=None if rate is None else Reading(rate, view.now - self.metrics_delay_seconds),
            cold_start_seconds=self.cold_start_seconds,
        )
        decision, self._state = decide(view.now, observations, forecast, self.policy, self._state)
        if decision.forecast_rps is not None:
            self._points.append((view.now, decision.forecast_rps))
        return decision.replicas

    def forecast_points(self) -> tuple[np.ndarray, np.ndarray]:
        at, rps = zip(*self._points, strict=True) if self._points else ((), ())
        return np.asarray(at, dtype=float), np.asarray(rps, dtype=float)

    def _forecast_at(self, view: ClusterView) -> Forecast | None:
        # The history gains a step only when now - delay crosses the pipeline's step grid, which
        # starts at the trace start, where the simulator's first tick is. Between crossings the
        # previous forecast stands (predicting again would give the same one); this keeps a 27-day
        # replay from rebuilding a 40,000-step history 160,000 times.
        if self._first_tick is None:
            self._first_tick = view.now
        visible_steps = math.floor(
            (view.now - self.metrics_delay_seconds - self._first_tick) / self.history_step_seconds
        )
        if visible_steps <= 0:
            return None
        if self._forecast is not None and self._forecast_step == visible_steps:
            return self._forecast
        step, delay = self.history_step_seconds, self.metrics_delay_seconds
        due = self._fitted_at is None or view.now - self._fitted_at >= self.refit_seconds
        if self._fitted is None or due:
            history = view.metrics.history(view.now, step, delay)
            self._fitted, self._fitted_at = self.forecaster.fit(history), view.now
        recent = view.metrics.history(view.now, step, delay, self.history_window_seconds)
        # The forecast starts where the history ends (now - delay, up to a step earlier) and must
        # reach now + cold start + decision delay + a tick. Example: 15+60+120+30+15 s = 4 steps + 1.
        lead_seconds = (
            self.metrics_delay_seconds
            + self.history_step_seconds
            + self.cold_start_seconds
            + self.policy.decision_delay_seconds
            + self.tick_seconds
        )
        horizon = math.ceil(lead_seconds / self.history_step_seconds) + 1
        self._forecast = self._fitted.predict(recent, horizon, self.policy.forecast_quantiles)
        self._forecast_step = visible_steps
        return self._forecast

"""Handwritten fakes for tests: a clock that only moves when told to, and small in-memory ports
for the control loop (a scripted signal source, a flat forecaster, a proportional decision)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from autoscaler.decision import Decision, DecisionState, Reason
from autoscaler.objective import operating_point
from autoscaler.observations import Histogram, Observations, Reading
from autoscaler.policy import ScalingPolicy
from forecasting.forecast import Forecast
from forecasting.model import ScalingGoal
from forecasting.series import LoadSeries


class FakeClock:
    """`sleep()` advances `now` by the requested seconds and yields once to the event loop, so a
    day of ticks runs in milliseconds and every timestamp is exact."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds

    async def sleep(self, seconds: float) -> None:
        self._now += max(0.0, seconds)
        await asyncio.sleep(0)


@dataclass
class ScriptedSignals:
    """A SignalReader whose instant values come from `values[query](now)` (None = missing, an
    exception is raised as is). A query in `gates` answers once its event is set, and a history
    read once `history_gate` is: a slow Prometheus whose answer the test releases, so no test
    depends on how fast this machine runs. `history_values[query](t)` gives the history at grid
    time t; `histograms[query](now)` the buckets a histogram query answers."""

    values: dict[str, Callable[[float], float | None]] = field(default_factory=dict)
    histograms: dict[str, Callable[[float], Histogram | None]] = field(default_factory=dict)
    history_values: dict[str, Callable[[float], float]] = field(default_factory=dict)
    gates: dict[str, asyncio.Event] = field(default_factory=dict)
    history_gate: asyncio.Event | None = None
    instant_calls: int = 0
    history_calls: list[str] = field(default_factory=list)

    async def instant(self, query: str, at: float) -> Reading | None:
        self.instant_calls += 1
        if query in self.gates:
            await self.gates[query].wait()
        value = self.values[query](at) if query in self.values else None
        return None if value is None else Reading(value=value, observed_at=at)

    async def histogram(self, query: str, at: float) -> Histogram | None:
        return self.histograms[query](at) if query in self.histograms else None

    async def history(self, query: str, start: float, end: float, step_seconds: float) -> LoadSeries | None:
        self.history_calls.append(query)
        if self.history_gate is not None:
            await self.history_gate.wait()
        source = self.history_values.get(query)
        if source is None:
            return None
        first = math.floor(start / step_seconds) * step_seconds
        times = np.arange(first, end, step_seconds)
        return LoadSeries(start=first, step_seconds=step_seconds, values=np.array([source(t) for t in times]))


@dataclass(frozen=True)
class FlatFit:
    level_rps: float

    def predict(self, history: LoadSeries, horizon_steps: int, quantiles: Sequence[float]) -> Forecast:
        path = np.full(horizon_steps, self.level_rps)
        return Forecast(history.end, history.step_seconds, {q: path for q in quantiles}, model="flat")


@dataclass
class FlatForecaster:
    """Forecasts the mean of the history it was fitted on, flat; counts its fits and keeps the
    goals it was given."""

    name: str = "flat"
    fits: int = 0
    goals: list[ScalingGoal | None] = field(default_factory=list)

    def fit(self, history: LoadSeries, goal: ScalingGoal | None = None) -> FlatFit:
        self.fits += 1
        self.goals.append(goal)
        known = history.values[~np.isnan(history.values)]
        return FlatFit(float(known.mean()) if len(known) else 0.0)


def proportional_decide(
    now: float,
    observations: Observations,
    forecast: Forecast | None,
    policy: ScalingPolicy,
    state: DecisionState,
) -> tuple[Decision, DecisionState]:
    """A stand-in for autoscaler.decide with only the rules the loop tests depend on: replicas =
    ceil(load / target per replica), or the forecast peak over the next cold start when higher;
    missing or stale load holds the last count."""
    load = observations.load
    held = state.last_replicas if state.last_replicas is not None else observations.current_replicas or 1
    if load is None or load.age_seconds(now) > policy.stale_after_seconds:
        return Decision(now, held, Reason.HELD_STALE), state
    replicas, reason = math.ceil(load.value / policy.target_rps_per_replica), Reason.LOAD
    if forecast is not None:
        lead = observations.cold_start_seconds or policy.default_cold_start_seconds
        peak = forecast.peak(now, now + lead, operating_point(policy, state.objective).forecast)
        if peak is not None and math.ceil(peak / policy.target_rps_per_replica) > replicas:
            replicas, reason = math.ceil(peak / policy.target_rps_per_replica), Reason.FORECAST
    replicas = min(max(replicas, policy.min_replicas), policy.max_replicas)
    return Decision(now, replicas, reason, forecast_rps=None), DecisionState(last_replicas=replicas)

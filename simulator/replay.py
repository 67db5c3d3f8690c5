"""The simulated cluster: replays per-second demand through one policy and records its replicas.

Everything lands on a one-second grid: policy ticks, pod creation, and readiness (creation + the
cold start, whole seconds). Removed pods stop at once; the least-ready pods (latest ready time,
so starting ones first) go first, as the ReplicaSet controller prefers not-ready pods. The Python
loop runs only at the policy's ticks; replica counts between ticks are filled from +/- deltas
recorded at each event and summed once at the end, so a 27-day trace costs its ticks, not its
2.4 million seconds.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from autoscaler.cost import DEFAULT_GPUS_PER_REPLICA
from simulator.view import ClusterView, MetricsPipeline, SimulatedAutoscaler

PROGRESS_EVERY_TICKS = 2000


@dataclass(frozen=True, slots=True)
class ReplaySettings:
    """What every policy shares in one run; a replica serves `replica_capacity_rps` flat out and
    policies aim at `target_utilization` of it."""

    replica_capacity_rps: float
    target_utilization: float = 0.7
    cold_start_seconds: int = 120
    min_replicas: int = 1
    max_replicas: int = 100_000
    scrape_delay_seconds: float = 15.0
    rate_window_seconds: float = 60.0
    # For the report's cost columns (GPU-hours, cost per 1,000 requests); no price, no money figure.
    gpus_per_replica: float = DEFAULT_GPUS_PER_REPLICA
    price_per_gpu_hour: float | None = None

    @property
    def target_rps_per_replica(self) -> float:
        return self.replica_capacity_rps * self.target_utilization

    def replicas_for(self, demand_rps: np.ndarray) -> np.ndarray:
        """ceil(demand / target per replica) within [min, max]; unknown demand needs the minimum."""
        # The 1e-9 keeps float noise from adding a replica: 0.07 rps at 0.1 rps capacity * 0.7 is
        # 1.0000000000000002 replicas by division, and one replica is enough.
        demand = np.nan_to_num(demand_rps, nan=0.0)
        needed = np.ceil(demand / self.target_rps_per_replica - 1e-9)
        # The slack must never cost a miss at full capacity: at target 1.0, 3.0000000005 rps at
        # 1 rps per replica needs 4.
        needed = np.where(needed * self.replica_capacity_rps < demand, needed + 1, needed)
        return np.clip(needed, self.min_replicas, self.max_replicas).astype(np.int64)


@dataclass(frozen=True, slots=True, eq=False)
class Occupancy:
    """One policy's replicas per simulated second: `provisioned` counts starting and ready pods.
    `forecast_at`/`forecast_rps` are the forecast peaks the policy used, when it forecasts."""

    name: str
    ready: np.ndarray
    provisioned: np.ndarray
    forecast_at: np.ndarray | None = None
    forecast_rps: np.ndarray | None = None


@runtime_checkable
class PlannedPolicy(Protocol):
    """A policy computed over the whole trace at once (static-peak, oracle), not ticked."""

    name: str

    def plan(self, demand_rps: np.ndarray, settings: ReplaySettings) -> Occupancy: ...


@runtime_checkable
class ForecastRecorder(Protocol):
    """A ticked policy that can say which forecast peak it used at each tick (for the plot)."""

    def forecast_points(self) -> tuple[np.ndarray, np.ndarray]: ...


def initial_replicas(demand_rps: np.ndarray, settings: ReplaySettings) -> int:
    """Every policy starts ready at the count the first minute's mean demand needs.

    Example: 42 requests/s over the first minute at 10 rps per replica -> 5 replicas.
    """
    first_minute = demand_rps[:60]
    mean = float(np.nanmean(first_minute)) if np.any(~np.isnan(first_minute)) else 0.0
    return int(settings.replicas_for(np.array([mean]))[0])


def simulate(
    autoscaler: SimulatedAutoscaler,
    demand_rps: np.ndarray,
    start_seconds: float,
    metrics: MetricsPipeline,
    settings: ReplaySettings,
    progress: Callable[[int], None] | None = None,
) -> Occupancy:
    """Tick `autoscaler` every `tick_seconds` over the trace; return its replicas per second."""
    seconds = len(demand_rps)
    start = initial_replicas(demand_rps, settings)
    ready_delta = np.zeros(seconds + 1, dtype=np.int64)
    provisioned_delta = np.zeros(seconds + 1, dtype=np.int64)
    ready_delta[0] = provisioned_delta[0] = start
    pods = [0] * start  # ready time (seconds since trace start) of each pod, sorted
    spec = start
    tick_seconds = autoscaler.tick_seconds
    ticks = math.ceil(seconds / tick_seconds)
    for index in range(ticks):
        if progress is not None and index % PROGRESS_EVERY_TICKS == 0:
            progress(min(PROGRESS_EVERY_TICKS, ticks - index))
        t = round(index * tick_seconds)
        view = ClusterView(
            now=start_seconds + t,
            spec_replicas=spec,
            status_replicas=len(pods),
            ready_replicas=bisect.bisect_right(pods, t),
            metrics=metrics,
        )
        spec = min(max(int(autoscaler.step(view)), settings.min_replicas), settings.max_replicas)
        change = spec - len(pods)
        if change > 0:
            ready_at = t + settings.cold_start_seconds
            for _ in range(change):
                bisect.insort(pods, ready_at)
            ready_delta[min(ready_at, seconds)] += change
        elif change < 0:
            for ready_at in pods[change:]:
                # A pod that was serving stops serving now; a starting one never will.
                ready_delta[t if ready_at <= t else min(ready_at, seconds)] -= 1
            del pods[change:]
        provisioned_delta[t] += change
    forecast_at, forecast_rps = (
        autoscaler.forecast_points() if isinstance(autoscaler, ForecastRecorder) else (None, None)
    )
    return Occupancy(
        autoscaler.name,
        np.cumsum(ready_delta[:seconds]),
        np.cumsum(provisioned_delta[:seconds]),
        forecast_at,
        forecast_rps,
    )


@dataclass(frozen=True, slots=True, eq=False)
class ReplayRun:
    """One trace replayed through several policies with the same settings; demand per second
    (unknown seconds as 0: a gap is treated as no demand) and each policy's occupancy."""

    source: str
    start_seconds: float
    demand_rps: np.ndarray
    settings: ReplaySettings
    occupancies: tuple[Occupancy, ...]


def replay(
    source: str,
    demand_per_second: np.ndarray,
    start_seconds: float,
    metrics: MetricsPipeline,
    settings: ReplaySettings,
    policies: Sequence[SimulatedAutoscaler | PlannedPolicy],
    progress: Callable[[str, int], Callable[[int], None] | None] | None = None,
) -> ReplayRun:
    """Run every policy over the same demand; `progress(name, ticks)` may return a callback
    that is told how many ticks went by."""
    demand = np.nan_to_num(demand_per_second, nan=0.0)
    occupancies = []
    for policy in policies:
        if isinstance(policy, PlannedPolicy):
            occupancies.append(policy.plan(demand_per_second, settings))
        else:
            ticks = math.ceil(len(demand) / policy.tick_seconds)
            advance = progress(policy.name, ticks) if progress is not None else None
            occupancies.append(simulate(policy, demand_per_second, start_seconds, metrics, settings, advance))
    return ReplayRun(source, start_seconds, demand, settings, tuple(occupancies))

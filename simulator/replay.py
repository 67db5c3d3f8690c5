"""The replay: per-second demand through one policy at a time, each scaling its own simulated
Deployment (simulator/pods.py), and the replicas each kept per second.

A ticked policy (`SimulatedAutoscaler`) runs here at its own cadence; a planned one (static-peak,
oracle) sees the whole trace at once; a closed-loop one (the shipped control loop, driven by the
shell) runs itself over a deployment built here, so every policy meets the same cold starts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from autoscaler.cost import DEFAULT_GPUS_PER_REPLICA
from simulator.metrics_pipeline import TraceMetrics
from simulator.pods import ColdStartDistribution, SimulatedDeployment
from simulator.trace import Trace
from simulator.view import ClusterView, MetricsPipeline, SimulatedAutoscaler

PROGRESS_EVERY_TICKS = 2000
# The default capacity: a replica serves 1/20 of the trace's p99 rate, so the p99 needs about
# 20 / 0.7 = 29 replicas at the default utilization.
CAPACITY_SHARE_OF_P99 = 1 / 20


@dataclass(frozen=True, slots=True)
class ReplaySettings:
    """What every policy shares in one run; a replica serves `replica_capacity_rps` flat out and
    policies aim at `target_utilization` of it. Pods become Ready after a cold start drawn per pod
    around `cold_start_seconds` (the median) with `cold_start_spread` (simulator/pods.py)."""

    replica_capacity_rps: float
    target_utilization: float = 0.7
    cold_start_seconds: int = 120
    cold_start_spread: float = 0.2
    seed: int = 0
    min_replicas: int = 1
    max_replicas: int = 100_000
    scrape_delay_seconds: float = 15.0
    rate_window_seconds: float = 60.0
    # For the report's cost columns (GPU-hours, cost per 1,000 requests); no price, no money figure.
    gpus_per_replica: float = DEFAULT_GPUS_PER_REPLICA
    price_per_gpu_hour: float | None = None

    @property
    def cold_starts(self) -> ColdStartDistribution:
        return ColdStartDistribution(float(self.cold_start_seconds), self.cold_start_spread, self.seed)

    def deployment(self, demand_rps: np.ndarray) -> SimulatedDeployment:
        """A fresh Deployment for one policy, at the run's initial replicas."""
        return SimulatedDeployment(len(demand_rps), initial_replicas(demand_rps, self), self.cold_starts)

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
    `forecast_at`/`forecast_rps` are the forecast peaks the policy used, when it forecasts;
    `forecast_models` how many decisions each forecast model made (a choosing model by its
    choice: objective_choice:clock_quantiles)."""

    name: str
    ready: np.ndarray
    provisioned: np.ndarray
    forecast_at: np.ndarray | None = None
    forecast_rps: np.ndarray | None = None
    forecast_models: Mapping[str, int] = field(default_factory=dict)


@runtime_checkable
class PlannedPolicy(Protocol):
    """A policy computed over the whole trace at once (static-peak, oracle), not ticked."""

    name: str

    def plan(self, demand_rps: np.ndarray, settings: ReplaySettings) -> Occupancy: ...


@runtime_checkable
class ClosedLoopPolicy(Protocol):
    """A policy that runs its own loop over a deployment from `settings.deployment(...)`: the
    shipped control loop, which the shell drives on a simulated clock (sidecar/replay_simulation)."""

    name: str

    def run(
        self,
        demand_per_second: np.ndarray,
        start_seconds: float,
        metrics: MetricsPipeline,
        settings: ReplaySettings,
    ) -> Occupancy: ...


def default_capacity_rps(trace: Trace) -> float:
    """p99 of the trace's per-step rate divided by 20; 1 rps if the trace has no demand at all."""
    rates = trace.rate_rps()
    known = rates[~np.isnan(rates)]
    p99 = float(np.percentile(known, 99)) if known.size else 0.0
    return p99 * CAPACITY_SHARE_OF_P99 if p99 > 0 else 1.0


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
    deployment = settings.deployment(demand_rps)
    tick_seconds = autoscaler.tick_seconds
    ticks = math.ceil(len(demand_rps) / tick_seconds)
    for index in range(ticks):
        if progress is not None and index % PROGRESS_EVERY_TICKS == 0:
            progress(min(PROGRESS_EVERY_TICKS, ticks - index))
        t = round(index * tick_seconds)
        view = ClusterView(
            now=start_seconds + t,
            spec_replicas=deployment.spec,
            status_replicas=deployment.status_replicas,
            ready_replicas=deployment.ready_replicas(t),
            metrics=metrics,
        )
        wanted = int(autoscaler.step(view))
        deployment.scale(t, min(max(wanted, settings.min_replicas), settings.max_replicas))
    return Occupancy(autoscaler.name, deployment.ready_per_second(), deployment.provisioned_per_second())


@dataclass(frozen=True, slots=True, eq=False)
class ReplayRun:
    """One trace replayed through several policies with the same settings; demand per second
    (unknown seconds as 0: a gap is treated as no demand) and each policy's occupancy.
    `parameters` are what the caller adds to the report's (how the policies were wired)."""

    source: str
    start_seconds: float
    demand_rps: np.ndarray
    settings: ReplaySettings
    occupancies: tuple[Occupancy, ...]
    parameters: Mapping[str, object] = field(default_factory=dict)


def replay(
    source: str,
    demand_per_second: np.ndarray,
    start_seconds: float,
    metrics: MetricsPipeline,
    settings: ReplaySettings,
    policies: Sequence[SimulatedAutoscaler | PlannedPolicy | ClosedLoopPolicy],
    progress: Callable[[str, int], Callable[[int], None] | None] | None = None,
    parameters: Mapping[str, object] | None = None,
) -> ReplayRun:
    """Run every policy over the same demand; `progress(name, ticks)` may return a callback
    that is told how many ticks went by."""
    demand = np.nan_to_num(demand_per_second, nan=0.0)
    occupancies = []
    for policy in policies:
        if isinstance(policy, PlannedPolicy):
            occupancies.append(policy.plan(demand_per_second, settings))
        elif isinstance(policy, ClosedLoopPolicy):
            occupancies.append(policy.run(demand_per_second, start_seconds, metrics, settings))
        else:
            ticks = math.ceil(len(demand) / policy.tick_seconds)
            advance = progress(policy.name, ticks) if progress is not None else None
            occupancies.append(simulate(policy, demand_per_second, start_seconds, metrics, settings, advance))
    return ReplayRun(source, start_seconds, demand, settings, tuple(occupancies), dict(parameters or {}))


def replay_trace(
    trace: Trace,
    settings: ReplaySettings,
    policies: Sequence[SimulatedAutoscaler | PlannedPolicy | ClosedLoopPolicy],
    progress: Callable[[str, int], Callable[[int], None] | None] | None = None,
    parameters: Mapping[str, object] | None = None,
) -> ReplayRun:
    """`replay` of a request-rate trace: its per-second demand, read through the metrics
    pipeline Prometheus would give (TraceMetrics)."""
    demand = trace.demand_per_second()
    metrics = TraceMetrics(demand, trace.start_seconds)
    start = trace.start_seconds
    return replay(trace.source, demand, start, metrics, settings, policies, progress, parameters)

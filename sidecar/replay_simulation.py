"""The shipped control loop over a simulated cluster: what both `replay`'s predictive policy and
`serve --replay` run, so every replay figure about the predictive policy is measured on the
code a cluster runs.

The chain is the cluster's: `ControlLoop` (the production tick, refit schedule, history read,
horizon and state) reads the load through `TraceSignals` (a Prometheus-like rate with the
replay's scrape delay and window) and the replica counts and pod readiness from
`SimulatedCluster`; it publishes to `LatestDecisions`; the consumer HPA (simulator/consumer.py,
configured as deploy/examples/hpa/hpa.yaml) reads `desired_replicas` as the external metrics
API serves it (absent when stale) and sets the simulated Deployment's spec.replicas; pods become
Ready after a cold start drawn per pod, and the loop learns it from their readiness through the
same `ColdStartSource` port a pod watch feeds.

Determinism: time is a `SteppedClock` moved one tick at a time after each tick, and fits run
inline (`InlineExecutor`), so a model fitted at one tick is used from the next, in every run.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import numpy as np

from autoscaler.observations import Reading
from forecasting.series import LoadSeries
from metrics_adapter.published_metrics import PUBLISHED_METRICS, is_fresh
from sidecar.clock import SteppedClock
from sidecar.control_loop import ControlLoop, LoopPorts, ReplicaCount, TickReport
from sidecar.core import Core
from sidecar.kubernetes_client import ColdStartTracker
from sidecar.latest_decisions import LatestDecisions
from sidecar.settings import (
    ForecastSettings,
    LoopSettings,
    ObjectiveSettings,
    ServerSettings,
    Settings,
    WorkloadSettings,
)
from simulator.consumer import SYNC_SECONDS, ConsumerHpa, example_hpa_spec
from simulator.hpa import Scale
from simulator.metrics_pipeline import TraceMetrics
from simulator.pods import SimulatedDeployment
from simulator.replay import Occupancy, ReplaySettings, default_capacity_rps
from simulator.trace import read_trace
from simulator.view import MetricsPipeline

P = ParamSpec("P")
T = TypeVar("T")

NAMESPACE = "replay"
WORKLOAD = "predictive"  # the workload `replay` scales, whatever its sweep point is called
DESIRED_REPLICAS = PUBLISHED_METRICS["desired_replicas"]


def load_query(workload: str) -> str:
    return f'sum(rate(requests_total{{workload="{workload}"}}[1m]))'


@dataclass(frozen=True, slots=True)
class TraceSignals:
    """A SignalReader over the replay's metrics pipeline: the load query reads the rate over the
    window ending one scrape delay ago, stamped then, as Prometheus would answer it; every other
    query is absent, as an unconfigured one would be."""

    metrics: MetricsPipeline
    load_query: str
    delay_seconds: float
    window_seconds: float

    async def instant(self, query: str, at: float) -> Reading | None:
        if query != self.load_query:
            return None
        rate = self.metrics.rate(at, self.window_seconds, self.delay_seconds)
        return None if rate is None else Reading(rate, at - self.delay_seconds)

    async def history(self, query: str, start: float, end: float, step_seconds: float) -> LoadSeries | None:
        if query != self.load_query:
            return None
        series = self.metrics.history(end, step_seconds, self.delay_seconds, end - start)
        if not len(series.values) or np.all(np.isnan(series.values)):
            return None
        return series


class InlineExecutor(Executor):
    """Runs each submitted fit at once on the calling thread: a replay must not depend on how
    fast a thread pool happens to be."""

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as error:  # handed to the loop, which logs it as a failed refit
            future.set_exception(error)
        return future


@dataclass
class SimulatedCluster:
    """One Deployment behind the consumer HPA, standing in for the Kubernetes API (a
    ReplicaReader) and for the pod watch (each pod that turned Ready by a read is handed to the
    cold-start tracker, keyed by the workload)."""

    deployment: SimulatedDeployment
    consumer: ConsumerHpa
    tracker: ColdStartTracker
    clock: SteppedClock
    key: tuple[str, str]
    start_seconds: float
    decision_max_age_seconds: float
    pods_seen: int = 0
    next_sync: float = -math.inf

    def _second(self) -> int:
        return round(self.clock.now() - self.start_seconds)

    async def read_replicas(self, namespace: str, kind: str, name: str) -> ReplicaCount:
        t = self._second()
        for pod in self.deployment.became_ready(t):
            self.pods_seen += 1
            self.tracker.record(
                self.key,
                f"replay-pod-{self.pods_seen}",
                self.start_seconds + pod.created,
                self.start_seconds + pod.ready,
            )
        return ReplicaCount(spec=self.deployment.spec, ready=self.deployment.ready_replicas(t))

    def follow(self, latest: LatestDecisions) -> None:
        """One HPA sync when one is due: it reads `desired_replicas` as the API would serve it."""
        now = self.clock.now()
        if now < self.next_sync:
            return
        self.next_sync = now + SYNC_SECONDS
        item = latest.get(*self.key)
        fresh = item is not None and is_fresh(item, now, self.decision_max_age_seconds)
        value = DESIRED_REPLICAS.read(item) if item is not None and fresh else None
        t = self._second()
        scale = Scale(
            self.deployment.spec, self.deployment.status_replicas, self.deployment.ready_replicas(t)
        )
        self.deployment.scale(t, self.consumer.sync(now, value, scale))


@dataclass
class Simulation:
    """What a replay puts in place of Prometheus and Kubernetes, and the hook that moves it on
    after each tick of the loop: the HPA follows the published decision, then time moves one
    tick, until the trace ends."""

    signals: TraceSignals
    cluster: SimulatedCluster
    clock: SteppedClock
    tick_seconds: float
    ends_at: float
    forecast_points: list[tuple[float, float]] = field(default_factory=list)
    decisions: list[tuple[float, int, str]] = field(default_factory=list)  # (at, replicas, reason)

    @property
    def tracker(self) -> ColdStartTracker:
        return self.cluster.tracker

    async def after_tick(self, report: TickReport, latest: LatestDecisions, stop: asyncio.Event) -> None:
        try:
            item = latest.get(*self.cluster.key)
            if item is not None and item.published_at == report.at:
                self.decisions.append((report.at, item.decision.replicas, str(item.decision.reason)))
                if item.decision.forecast_rps is not None:
                    self.forecast_points.append((report.at, item.decision.forecast_rps))
            self.cluster.follow(latest)
        finally:
            # Time moves on even if the HPA step failed: the loop logs the failure and ticks on.
            if report.at + self.tick_seconds >= self.ends_at:
                stop.set()
            else:
                await self.clock.step(self.tick_seconds)


@dataclass(frozen=True, slots=True)
class LoopOptions:
    """What the replay sets of the predictive policy beyond the shared ReplaySettings."""

    forecast: ForecastSettings = field(default_factory=ForecastSettings)
    objective: ObjectiveSettings = field(default_factory=ObjectiveSettings)
    tolerance: float = 0.1
    speedup: float | None = None


def replay_workload(
    name: str,
    settings: ReplaySettings,
    options: LoopOptions,
    target_utilization: float | None = None,
) -> WorkloadSettings:
    """The workload a replay scales: the run's capacity, target (or `target_utilization`, a sweep
    point) and bounds; the cold start is learned, not given."""
    return WorkloadSettings(
        name=name,
        namespace=NAMESPACE,
        queries={"load": load_query(name)},
        replica_capacity_rps=settings.replica_capacity_rps,
        target_utilization=settings.target_utilization if target_utilization is None else target_utilization,
        min_replicas=settings.min_replicas,
        max_replicas=settings.max_replicas,
        forecast=options.forecast,
        objective=options.objective,
    )


def build_simulation(
    name: str,
    demand_per_second: np.ndarray,
    start_seconds: float,
    metrics: MetricsPipeline,
    settings: ReplaySettings,
    loop: LoopSettings,
    options: LoopOptions,
    estimate_cold_start: Callable[[Any], float | None],
    decision_max_age_seconds: float = ServerSettings().decision_max_age_seconds,
) -> Simulation:
    clock = SteppedClock(start_seconds, options.speedup)
    cluster = SimulatedCluster(
        deployment=settings.deployment(np.nan_to_num(demand_per_second, nan=0.0)),
        consumer=ConsumerHpa(
            example_hpa_spec(settings.min_replicas, settings.max_replicas, options.tolerance)
        ),
        tracker=ColdStartTracker(estimate=estimate_cold_start),
        clock=clock,
        key=(NAMESPACE, name),
        start_seconds=start_seconds,
        decision_max_age_seconds=decision_max_age_seconds,
    )
    signals = TraceSignals(
        metrics, load_query(name), settings.scrape_delay_seconds, settings.rate_window_seconds
    )
    return Simulation(
        signals=signals,
        cluster=cluster,
        clock=clock,
        tick_seconds=loop.tick_seconds,
        ends_at=start_seconds + len(demand_per_second),
    )


def loop_ports(simulation: Simulation, core: Core, latest: LatestDecisions) -> LoopPorts:
    return LoopPorts(
        signals=simulation.signals,
        decide=core.decide,
        models=core.models,
        latest=latest,
        clock=simulation.clock,
        executor=InlineExecutor(),
        replicas=simulation.cluster,
        cold_starts=simulation.tracker,
    )


@dataclass(frozen=True, slots=True)
class ControlLoopPolicy:
    """`replay`'s predictive policy (a ClosedLoopPolicy): the control loop with its default
    settings over the simulated cluster, from the trace start to its end."""

    core: Core
    options: LoopOptions = field(default_factory=LoopOptions)
    loop: LoopSettings = field(default_factory=LoopSettings)
    target_utilization: float | None = None
    name: str = "predictive"
    workload: str = WORKLOAD

    def run(
        self,
        demand_per_second: np.ndarray,
        start_seconds: float,
        metrics: MetricsPipeline,
        settings: ReplaySettings,
    ) -> Occupancy:
        simulation = self.simulate(demand_per_second, start_seconds, metrics, settings)
        deployment = simulation.cluster.deployment
        at, rps = zip(*simulation.forecast_points, strict=True) if simulation.forecast_points else ((), ())
        return Occupancy(
            self.name,
            deployment.ready_per_second(),
            deployment.provisioned_per_second(),
            np.asarray(at, dtype=float),
            np.asarray(rps, dtype=float),
        )

    def simulate(
        self,
        demand_per_second: np.ndarray,
        start_seconds: float,
        metrics: MetricsPipeline,
        settings: ReplaySettings,
    ) -> Simulation:
        """The whole replay; the finished simulation holds the pods and every decision."""
        simulation = build_simulation(
            self.workload,
            demand_per_second,
            start_seconds,
            metrics,
            settings,
            self.loop,
            self.options,
            self.core.estimate_cold_start,
        )
        workload = replay_workload(self.workload, settings, self.options, self.target_utilization)
        asyncio.run(run_loop(simulation, workload, self.loop, self.core))
        return simulation


async def run_loop(
    simulation: Simulation,
    workload: WorkloadSettings,
    loop_settings: LoopSettings,
    core: Core,
    on_tick: Callable[[TickReport], Any] | None = None,
) -> LatestDecisions:
    """The loop over the simulation until the trace ends, as `serve` runs it minus the servers."""
    latest = LatestDecisions()
    loop = ControlLoop(
        workloads=(workload,), settings=loop_settings, ports=loop_ports(simulation, core, latest)
    )
    stop = asyncio.Event()

    async def after_tick(report: TickReport) -> None:
        if on_tick is not None:
            on_tick(report)
        await simulation.after_tick(report, latest, stop)

    await loop.run(stop, after_tick)
    return latest


def serve_settings(base: Settings, workload: WorkloadSettings) -> Settings:
    """`serve --replay`'s settings: the file's (ports, loop cadence, logging) with the replay's
    one workload and no cluster."""
    return base.model_copy(
        update={
            "workloads": (workload,),
            "kubernetes": base.kubernetes.model_copy(update={"enabled": False}),
        }
    )


def workload_name(trace_path: Path) -> str:
    """A DNS label from the trace's file name: nasa-http-1995-jul-4d.csv -> nasa-http-1995-jul-4d."""
    name = "".join(c if c.isalnum() else "-" for c in trace_path.stem.lower()).strip("-")
    return name[:63].strip("-") or "trace"


def serve_replay(
    trace_path: Path,
    base: Settings,
    speedup: float | None,
    estimate_cold_start: Callable[[Any], float | None],
) -> tuple[Settings, Simulation]:
    """`serve --replay`: the settings and simulation for one trace, built as `replay` builds its
    predictive policy (same capacity default, forecast settings and cluster), with the file's
    loop settings and the demo paced at `speedup` trace seconds per wall second."""
    trace = read_trace(trace_path)
    demand = trace.demand_per_second()
    settings = ReplaySettings(replica_capacity_rps=default_capacity_rps(trace))
    name = workload_name(trace_path)
    simulation = build_simulation(
        name,
        demand,
        float(trace.start_seconds),
        TraceMetrics(demand, trace.start_seconds),
        settings,
        base.loop,
        LoopOptions(speedup=speedup),
        estimate_cold_start,
        base.server.decision_max_age_seconds,
    )
    return serve_settings(base, replay_workload(name, settings, LoopOptions())), simulation

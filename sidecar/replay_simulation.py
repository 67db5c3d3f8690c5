"""The shipped control loop over a simulated cluster: what `replay`'s predictive policy (on a
request-rate trace and on a per-request LLM trace) and `serve --replay` run, so every replay
figure about the predictive policy is measured on the code a cluster runs.

The chain is the cluster's: `ControlLoop` (the production tick, refit schedule, history read,
horizon and state) reads its signals through `TraceSignals` (each query a simulator source with
the replay's scrape delay and window: the request rate of a trace, or the vLLM counters and
gauges of the serving cluster) and the replica counts and pod readiness from `SimulatedCluster`;
it publishes to `LatestDecisions`; the consumer (simulator/consumer.py) reads it as the servers
serve it: the HPA of deploy/examples/hpa reads `desired_replicas` as the external metrics API
does (absent when stale), or, with `LoopOptions.consumer` "keda", the ScaledObject of
deploy/examples/keda asks IsActive (`wants_active`, the gRPC scaler's own function) and GetMetrics
(an error when stale) and takes the target to zero and back itself; either sets the simulated
Deployment's spec.replicas (simulator/pods.Deployment: pods only, or vLLM replicas serving the
requests); pods become Ready after a cold start drawn per
pod, and the loop learns it from their readiness through the same `ColdStartSource` port a pod
watch feeds. After each tick the cluster runs to the next tick, then the clock moves there.

Determinism: time is a `SteppedClock` moved one tick at a time after each tick, and fits run
inline (`InlineExecutor`), so a model fitted at one tick is used from the next, in every run.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import numpy as np

from autoscaler.observations import Histogram, Reading
from forecasting.series import LoadSeries
from metrics_adapter.published_metrics import PUBLISHED_METRICS, is_fresh, wants_active
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
from simulator.consumer import (
    SYNC_SECONDS,
    ConsumerHpa,
    ConsumerKeda,
    example_hpa_spec,
    example_scaled_object,
)
from simulator.hpa import Scale
from simulator.llm_policies import KEDA_QUEUE_THRESHOLD
from simulator.llm_replay import DEFAULT_LOAD, LOADS, LlmReplaySettings, load_capacity, target_attainment
from simulator.llm_report import Slo
from simulator.metrics_pipeline import TraceMetrics
from simulator.pods import Deployment
from simulator.replay import Occupancy, ReplaySettings, default_capacity_rps
from simulator.serving import ServingCluster
from simulator.signal_sources import (
    HistogramSource,
    LlmCounterRate,
    LlmGauge,
    LlmTtftBuckets,
    PipelineRate,
    SignalSource,
)
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
    """A SignalReader over the replay's sources (simulator/signal_sources.py), one per rendered
    query, each answering as Prometheus would (one scrape delay late, stamped then); every other
    query is absent, as an unconfigured one would be."""

    sources: Mapping[str, SignalSource]
    histograms: Mapping[str, HistogramSource] = field(default_factory=dict)

    async def instant(self, query: str, at: float) -> Reading | None:
        source = self.sources.get(query)
        return None if source is None else source.instant(at)

    async def histogram(self, query: str, at: float) -> Histogram | None:
        source = self.histograms.get(query)
        return None if source is None else source.histogram(at)

    async def history(self, query: str, start: float, end: float, step_seconds: float) -> LoadSeries | None:
        source = self.sources.get(query)
        return None if source is None else source.history(start, end, step_seconds)


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
    """One Deployment behind its consumer (the HPA or KEDA), standing in for the Kubernetes API (a
    ReplicaReader) and for the pod watch (each pod that turned Ready by a read is handed to the
    cold-start tracker, keyed by the workload)."""

    deployment: Deployment
    consumer: ConsumerHpa | ConsumerKeda
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
        """One consumer sync when one is due: it reads `desired_replicas` (and KEDA IsActive) as
        the servers would answer."""
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
        if isinstance(self.consumer, ConsumerKeda):
            active = wants_active(item) if item is not None and fresh else None
            desired = self.consumer.sync(now, active, value, scale)
        else:
            desired = self.consumer.sync(now, value, scale)
        self.deployment.scale(t, desired)

    def advance(self, until: float) -> None:
        """Run the cluster up to `until` (Unix seconds) before the loop reads it there."""
        self.deployment.advance(round(until - self.start_seconds))


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
    # (at, per replica) from the first tick autoscaler.capacity has an estimate.
    learned_capacity: list[tuple[float, float]] = field(default_factory=list)
    # Decisions per forecast model (a choosing model by its choice).
    forecast_models: dict[str, int] = field(default_factory=dict)

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
                if item.forecast is not None:
                    model = item.forecast.model
                    self.forecast_models[model] = self.forecast_models.get(model, 0) + 1
                if item.learned_capacity is not None:
                    self.learned_capacity.append((report.at, item.learned_capacity.per_replica))
            self.cluster.follow(latest)
        finally:
            # Time moves on even if the HPA step failed: the loop logs the failure and ticks on.
            if report.at + self.tick_seconds >= self.ends_at:
                stop.set()
            else:
                self.cluster.advance(report.at + self.tick_seconds)
                await self.clock.step(self.tick_seconds)


@dataclass(frozen=True, slots=True)
class LoopOptions:
    """What the replay sets of the predictive policy beyond the shared ReplaySettings; `consumer`
    is what reads its decisions: "hpa" (deploy/examples/hpa) or "keda" (deploy/examples/keda)."""

    forecast: ForecastSettings = field(default_factory=ForecastSettings)
    objective: ObjectiveSettings = field(default_factory=ObjectiveSettings)
    tolerance: float = 0.1
    consumer: str = "hpa"
    speedup: float | None = None


def scaled_workload(
    name: str,
    queries: Mapping[str, str],
    capacity: float | None,
    target_utilization: float,
    bounds: tuple[int, int],
    options: LoopOptions,
    queue_depth_target_per_replica: float | None = None,
    ttft_target_seconds: float | None = None,
    objective: ObjectiveSettings | None = None,
) -> WorkloadSettings:
    """The workload a replay scales: its queries, a replica's capacity in the load's unit (None:
    learned online), the target (a sweep point) and bounds; the cold start is learned, not given.
    `objective`, when given, replaces the options' (a replay that declares its own SLO)."""
    return WorkloadSettings(
        name=name,
        namespace=NAMESPACE,
        queries=dict(queries),
        replica_capacity_rps=capacity,
        target_utilization=target_utilization,
        min_replicas=bounds[0],
        max_replicas=bounds[1],
        queue_depth_target_per_replica=queue_depth_target_per_replica,
        ttft_target_seconds=ttft_target_seconds,
        forecast=options.forecast,
        objective=options.objective if objective is None else objective,
    )


def replay_workload(
    name: str, settings: ReplaySettings, options: LoopOptions, target_utilization: float | None = None
) -> WorkloadSettings:
    """The request-rate replay's workload: the run's capacity, target (or `target_utilization`)."""
    return scaled_workload(
        name,
        {"load": load_query(name)},
        settings.replica_capacity_rps,
        settings.target_utilization if target_utilization is None else target_utilization,
        (settings.min_replicas, settings.max_replicas),
        options,
    )


def build_simulation(
    name: str,
    deployment: Deployment,
    signals: TraceSignals,
    start_seconds: float,
    seconds: float,
    bounds: tuple[int, int],
    loop: LoopSettings,
    options: LoopOptions,
    estimate_cold_start: Callable[[Any], float | None],
    decision_max_age_seconds: float = ServerSettings().decision_max_age_seconds,
) -> Simulation:
    clock = SteppedClock(start_seconds, options.speedup)
    cluster = SimulatedCluster(
        deployment=deployment,
        consumer=(
            ConsumerKeda(example_scaled_object(*bounds, options.tolerance))
            if options.consumer == "keda"
            else ConsumerHpa(example_hpa_spec(*bounds, options.tolerance))
        ),
        tracker=ColdStartTracker(estimate=estimate_cold_start),
        clock=clock,
        key=(NAMESPACE, name),
        start_seconds=start_seconds,
        decision_max_age_seconds=decision_max_age_seconds,
    )
    return Simulation(
        signals=signals,
        cluster=cluster,
        clock=clock,
        tick_seconds=loop.tick_seconds,
        ends_at=start_seconds + seconds,
    )


def rate_simulation(
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
    """The request-rate replay's simulation: pods only, the load read from the trace's demand."""
    rate = PipelineRate(metrics, settings.scrape_delay_seconds, settings.rate_window_seconds)
    return build_simulation(
        name,
        settings.deployment(np.nan_to_num(demand_per_second, nan=0.0)),
        TraceSignals({load_query(name): rate}),
        start_seconds,
        len(demand_per_second),
        (settings.min_replicas, settings.max_replicas),
        loop,
        options,
        estimate_cold_start,
        decision_max_age_seconds,
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
            dict(simulation.forecast_models),
        )

    def simulate(
        self,
        demand_per_second: np.ndarray,
        start_seconds: float,
        metrics: MetricsPipeline,
        settings: ReplaySettings,
    ) -> Simulation:
        """The whole replay; the finished simulation holds the pods and every decision."""
        simulation = rate_simulation(
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


def serving_load_query(load: str, workload: str) -> str:
    """The load query a workload's settings would hold for `load` (simulator/llm_replay.LOADS):
    the arrivals a gateway counts, or the prompt and generated tokens vLLM counts."""
    if load == "requests":
        return load_query(workload)
    return " + ".join(f'sum(rate(vllm:{counter}{{workload="{workload}"}}[1m]))' for counter in LOADS[load])


def queue_query(workload: str) -> str:
    return f'sum(vllm:num_requests_waiting{{workload="{workload}"}})'


def ttft_histogram_query(workload: str) -> str:
    """The vLLM preset's `ttft_histogram` shape, over the replay's workload label."""
    return f'sum by (le) (rate(vllm:time_to_first_token_seconds_bucket{{workload="{workload}"}}[1m]))'


@dataclass(frozen=True, slots=True)
class ServingControlLoopPolicy:
    """`replay`'s predictive policy on a per-request trace (a ClosedLoopServingPolicy): the
    control loop with its default settings over the serving cluster, the load `load` (request
    or token rate, its capacity a replica's flat-out figure for the trace's mean token mix) as
    the forecast and reactive load, and vLLM's queue as the reactive queue signal
    (`queue_depth_target_per_replica`, production-stack's threshold by default). The workload
    declares the SLO the replay scores (`slo`): its TTFT as `ttft_target_seconds` and the
    attainment the replay compares policies at (simulator/llm_replay.target_attainment) as
    `objective.ttft_attainment`, measured on the TTFT histogram as the vLLM preset reads it.
    `capacity` replaces that figure (the load's unit); `learn_capacity` leaves the capacity out of
    the settings, so the loop learns it from the queue (autoscaler.capacity) and scales on the
    queue alone until it has."""

    core: Core
    target_utilization: float
    load: str = DEFAULT_LOAD
    options: LoopOptions = field(default_factory=LoopOptions)
    loop: LoopSettings = field(default_factory=LoopSettings)
    queue_depth_target_per_replica: float | None = KEDA_QUEUE_THRESHOLD
    capacity: float | None = None
    learn_capacity: bool = False
    slo: Slo = field(default_factory=Slo)
    name: str = "predictive"
    workload: str = WORKLOAD

    def drive(self, cluster: ServingCluster, settings: LlmReplaySettings) -> Simulation:
        """The whole replay over `cluster`; the finished simulation holds every decision."""
        trace, signals = cluster.trace, cluster.signals
        delay, window = settings.scrape_delay_seconds, settings.rate_window_seconds
        load = serving_load_query(self.load, self.workload)
        queue = queue_query(self.workload)
        ttft = ttft_histogram_query(self.workload)
        sources: dict[str, SignalSource] = {
            load: LlmCounterRate(signals, LOADS[self.load], delay, window),
            queue: LlmGauge(signals, "num_requests_waiting", delay),
        }
        histograms = {ttft: LlmTtftBuckets(signals, delay, window)}
        simulation = build_simulation(
            self.workload,
            cluster,
            TraceSignals(sources, histograms),
            trace.start_seconds,
            trace.duration_seconds,
            settings.bounds,
            self.loop,
            self.options,
            self.core.estimate_cold_start,
        )
        attainment = target_attainment(trace, cluster.profile, self.slo)
        workload = scaled_workload(
            self.workload,
            {"load": load, "queue_depth": queue, "ttft_histogram": ttft},
            None
            if self.learn_capacity
            else self.capacity or load_capacity(trace, cluster.profile, self.load),
            self.target_utilization,
            settings.bounds,
            self.options,
            self.queue_depth_target_per_replica,
            self.slo.ttft_seconds,
            self.options.objective.model_copy(update={"ttft_attainment": attainment}),
        )
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
    simulation = rate_simulation(
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

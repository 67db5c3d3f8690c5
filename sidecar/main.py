"""Composition root of the sidecar: settings -> clients -> control loop and servers, one TaskGroup.

`serve()` builds every shared object, hands each to a named task, and returns once `stop` is
set and everything has drained: the tick in progress finishes, state is saved, the Lease is
released, the servers close. `run()` adds what a process needs around it: logging, SIGTERM and
SIGINT, an exit status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import ssl
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np
from aiohttp import web
from kubernetes_asyncio import client
from kubernetes_asyncio.config import ConfigException

from autoscaler.decision import Reason
from metrics_adapter.authentication import FrontProxyVerifier, KubernetesAccessReviewer
from metrics_adapter.external_metrics_api import (
    ExternalMetricsSettings,
    build_external_metrics_app,
    build_server_ssl_context,
)
from metrics_adapter.keda_scaler import KedaScalerSettings, build_keda_server
from sidecar.clock import AcceleratedClock, Clock, SystemClock, sleep_unless_stopped
from sidecar.cluster_simulation import SimulatedCluster, TraceSignals, load_trace
from sidecar.control_loop import (
    ControlLoop,
    DecideFunction,
    LoopPorts,
    ModelRegistry,
    ReplicaReader,
    SignalReader,
    TickReport,
)
from sidecar.kubernetes_client import (
    ColdStartTracker,
    KubernetesReader,
    LeaseElector,
    Prewarmer,
    PrewarmTarget,
    connect,
    watch_cold_starts,
)
from sidecar.latest_decisions import LatestDecisions
from sidecar.listeners import ConnectionLimits, start_listener
from sidecar.logs import configure_logging
from sidecar.prometheus_reader import PrometheusReader, QueryStats
from sidecar.readiness import HealthRoutes
from sidecar.settings import ServerSettings, Settings, SettingsError, SettingsFile, WorkloadSettings
from sidecar.settings_watch import watch_settings
from sidecar.state_store import StateStore, restore, snapshot
from sidecar.telemetry import Telemetry, build_call_metrics, build_metrics_app, build_telemetry
from simulator.trace import TraceError

log = logging.getLogger(__name__)
# SIGHUP too: a terminal or supervisor closing must not skip the drain (state, floors, Lease).
DRAIN_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

WATCHER_SYNC_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class Core:
    """The pure functions the shell drives, passed in so the root names every dependency."""

    decide: DecideFunction
    models: ModelRegistry
    estimate_cold_start: Callable[[Sequence[tuple[float, float]]], float | None]


def load_core() -> Core:
    # Imported here, not at the top, so `predictive-autoscaler --help` and the settings check
    # work even when a model's heavy dependency (statsmodels, LightGBM) is broken.
    from autoscaler.cold_start import estimate_cold_start
    from autoscaler.decide import decide
    from forecasting.registry import MODELS

    def estimate(pairs: Sequence[tuple[float, float]]) -> float | None:
        return estimate_cold_start(pairs, quantile=0.9, default_seconds=None)

    return Core(decide=decide, models=MODELS, estimate_cold_start=estimate)


@dataclass
class Simulation:
    """What `serve --replay` puts in place of Prometheus and Kubernetes.

    `follow` also stands in for the pod watch: each pod the simulated cluster creates is handed to
    the cold-start tracker once it is Ready, so the replay's cold start is learned through the
    core's estimator (and exported) exactly as in a cluster, not configured.
    """

    signals: TraceSignals
    cluster: SimulatedCluster
    ends_at: float
    starting: list[tuple[float, float]] = field(default_factory=list)  # (created, ready), oldest first
    started: int = 0

    def follow(self, latest: LatestDecisions, tracker: ColdStartTracker, now: float) -> None:
        before = len(self.cluster.ready_at)
        self.cluster.follow(latest)
        change = len(self.cluster.ready_at) - before
        if change > 0:
            self.starting += [(now, now + self.cluster.cold_start_seconds)] * change
        elif change < 0:
            # The cluster removes not-ready pods first, and the newest pods are the least ready.
            del self.starting[max(0, len(self.starting) + change) :]
        items = latest.all()
        while items and self.starting and self.starting[0][1] <= now:
            created, ready = self.starting.pop(0)
            self.started += 1
            tracker.record((items[0].namespace, items[0].workload), f"replay-{self.started}", created, ready)


@dataclass
class Service:
    """Handles a caller (a test, a bench) gets once the service is up."""

    loop: ControlLoop
    latest: LatestDecisions
    health: HealthRoutes
    addresses: dict[str, str] = field(default_factory=dict)
    query_stats: QueryStats | None = None


async def serve(
    settings: Settings,
    *,
    core: Core,
    clock: Clock,
    stop: asyncio.Event,
    settings_file: SettingsFile | None = None,
    simulation: Simulation | None = None,
    started: Callable[[Service], None] | None = None,
) -> None:
    async with AsyncExitStack() as stack:
        latest = LatestDecisions()
        executor = ThreadPoolExecutor(
            max_workers=max(1, min(4, os.cpu_count() or 1)), thread_name_prefix="refit"
        )
        stack.callback(executor.shutdown, wait=False, cancel_futures=True)

        telemetry = build_telemetry(latest, clock.now)
        call_metrics = build_call_metrics(telemetry.registry)
        signals: SignalReader
        replicas: ReplicaReader | None = None
        query_stats: QueryStats | None = None
        tracker = ColdStartTracker(estimate=core.estimate_cold_start)
        kube_api = None
        if simulation is not None:
            signals, replicas = simulation.signals, simulation.cluster
        else:
            session = await stack.enter_async_context(aiohttp.ClientSession())
            reader = PrometheusReader(
                session,
                settings.prometheus.url,
                clock,
                settings.prometheus.timeout_seconds,
                call_metrics,
            )
            signals, query_stats = reader, reader.stats
            if settings.kubernetes.enabled:
                with _starting("the Kubernetes client (kubernetes.kubeconfig)"):
                    kube_api = await connect(settings.kubernetes.kubeconfig)
                stack.push_async_callback(kube_api.close)
                replicas = KubernetesReader(kube_api, call_metrics)

        loop = ControlLoop(
            workloads=settings.workloads,
            settings=settings.loop,
            ports=LoopPorts(
                signals=signals,
                decide=core.decide,
                models=core.models,
                latest=latest,
                clock=clock,
                executor=executor,
                replicas=replicas,
                cold_starts=tracker,
            ),
        )
        if isinstance(signals, PrometheusReader):
            signals.source_of = loop.query_source
        store = StateStore(Path(settings.state.path)) if settings.state.path else None
        if store is not None:
            _restore_state(store, loop, tracker)

        health = HealthRoutes(loop, clock)
        service = Service(loop=loop, latest=latest, health=health, query_stats=query_stats)
        plain_app = build_metrics_app(telemetry)
        health.add_to(plain_app)
        with _starting(f"the health server (server.health_port={settings.server.health_port})"):
            service.addresses["health"] = await _start_site(
                stack, plain_app, settings.server, settings.server.health_port
            )
        with _starting("the metrics adapters (server.http_port, grpc_port and TLS files)"):
            await _start_adapters(
                stack, service, settings, telemetry, clock, kube_api, simulation is not None
            )

        elector = prewarmer = None
        if kube_api is not None and any(w.prewarm for w in settings.workloads):
            identity = settings.kubernetes.identity or socket.gethostname()
            elector = LeaseElector(
                kube_api,
                clock,
                settings.kubernetes.lease_namespace,
                settings.kubernetes.lease_name,
                identity,
                settings.kubernetes.lease_duration_seconds,
            )
            prewarmer = Prewarmer(kube_api, elector)

        async def after_tick(report: TickReport) -> None:
            health.ticked(report.at)
            for runtime in loop.runtimes.values():
                if runtime.published is not None and runtime.published.published_at == report.at:
                    telemetry.record_decision(runtime.published)
            if simulation is not None:
                simulation.follow(latest, tracker, clock.now())
                if clock.now() >= simulation.ends_at:
                    log.info("replay reached the end of the trace")
                    stop.set()
            if prewarmer is not None:
                await _prewarm(prewarmer, loop)

        if started is not None:
            started(service)
        log.info("serving", extra={"workloads": len(loop.runtimes), **service.addresses})
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(loop.run(stop, after_tick), name="control loop")
                if settings_file is not None:
                    tasks.create_task(
                        watch_settings(settings_file, loop, clock, stop, settings), name="settings watcher"
                    )
                if store is not None:
                    interval = settings.state.save_interval_seconds
                    tasks.create_task(
                        _save_periodically(store, loop, tracker, clock, interval, stop), name="state saver"
                    )
                if elector is not None:
                    # Released below, after the pre-warm floors are restored: a released Lease makes
                    # every leader-only write (the restore included) a no-op.
                    tasks.create_task(elector.run(stop, release_on_stop=False), name="lease elector")
                if kube_api is not None and isinstance(replicas, KubernetesReader):
                    tasks.create_task(
                        _supervise_pod_watchers(kube_api, replicas, loop, tracker, clock, stop),
                        name="pod watchers",
                    )
        finally:
            # Also when a task failed: saving state and handing back floors and the Lease must not
            # depend on every task having ended cleanly.
            if store is not None:
                try:
                    store.save(snapshot(loop, clock.now(), tracker.samples_seconds()))
                    log.info("state saved", extra={"path": str(store.path)})
                except OSError as error:
                    log.error("cannot save state at shutdown", extra={"error": str(error)})
            await _hand_back(prewarmer, elector)


class StartupError(Exception):
    """A port, file or cluster the service needs at start is not usable; the message says which."""


@contextlib.contextmanager
def _starting(what: str) -> Iterator[None]:
    try:
        yield
    except (OSError, ConfigException) as error:  # ssl.SSLError is an OSError
        named = isinstance(error, OSError) and error.filename
        detail = f"{error.strerror}: {error.filename}" if named else str(error)
        raise StartupError(f"cannot start {what}: {detail}") from error
    except RuntimeError as error:  # grpc's "Failed to bind to address ..."
        raise StartupError(f"cannot start {what}: {error}") from error


async def _start_site(
    stack: AsyncExitStack,
    app: web.Application,
    server: ServerSettings,
    port: int,
    tls: ssl.SSLContext | None = None,
) -> str:
    limits = ConnectionLimits(server.idle_timeout_seconds, server.max_connections)
    return await start_listener(stack, app, server.host, port, limits, tls)


async def _start_adapters(
    stack: AsyncExitStack,
    service: Service,
    settings: Settings,
    telemetry: Telemetry,
    clock: Clock,
    kube_api: client.ApiClient | None,
    local_demo: bool,
) -> None:
    """The external metrics API (+ KEDA metrics-api JSON) and the KEDA gRPC scaler, all reading
    LatestDecisions. Without TLS files they serve plain text, which only a port-forward or the
    replay demo should use; the aggregator requires HTTPS."""
    server = settings.server
    tls_context = None
    tls_pem = None
    grpc_client_ca = None
    front_proxy = None
    try:
        if server.tls_cert_file and server.tls_key_file:
            tls_context = build_server_ssl_context(
                server.tls_cert_file, server.tls_key_file, server.client_ca_file
            )
            tls_pem = (Path(server.tls_cert_file).read_bytes(), Path(server.tls_key_file).read_bytes())
        if server.grpc_client_ca_file:
            grpc_client_ca = Path(server.grpc_client_ca_file).read_bytes()
        if server.client_ca_file:
            # Certificate validity is judged on the wall clock, as the TLS handshake itself does,
            # even when `clock` is a replay's simulated one.
            front_proxy = FrontProxyVerifier(
                Path(server.client_ca_file).read_bytes(), server.requestheader_allowed_names
            )
    except OSError as error:  # ssl names no file when one is missing
        files = ", ".join(
            f"server.{name}={getattr(server, name)}"
            for name in ("tls_cert_file", "tls_key_file", "client_ca_file", "grpc_client_ca_file")
        )
        raise StartupError(f"cannot load the TLS files ({files}): {error.strerror or error}") from error
    external = ExternalMetricsSettings(
        max_age_seconds=server.decision_max_age_seconds,
        clock=clock.now,
        front_proxy=front_proxy,
        reviewer=KubernetesAccessReviewer(kube_api, clock.now) if kube_api is not None else None,
        allow_unauthenticated=server.allow_unauthenticated or local_demo,
    )
    app = build_external_metrics_app(service.latest, external, telemetry.request_seconds)
    service.addresses["external_metrics"] = await _start_site(
        stack, app, server, server.http_port, tls_context
    )
    keda, port = build_keda_server(
        service.latest,
        KedaScalerSettings(max_age_seconds=server.decision_max_age_seconds, clock=clock.now),
        f"{server.host}:{server.grpc_port}",
        tls_pem,
        telemetry.request_seconds,
        ConnectionLimits(server.idle_timeout_seconds, server.max_connections),
        grpc_client_ca,
    )
    await keda.start()
    stack.push_async_callback(keda.stop, 5)
    service.addresses["keda_grpc"] = f"{server.host}:{port}"


def _restore_state(store: StateStore, loop: ControlLoop, tracker: ColdStartTracker) -> None:
    loaded = store.load()
    if loaded.problem is not None:
        log.warning("state file ignored; rebuilding from history", extra={"problem": loaded.problem})
    if loaded.state is None:
        return
    restored = restore(loop, loaded.state)
    tracker.restore(loaded.state.cold_start_samples_seconds)
    log.info("state restored", extra={"workloads": len(restored), "skipped": list(loaded.skipped)})


async def _save_periodically(
    store: StateStore,
    loop: ControlLoop,
    tracker: ColdStartTracker,
    clock: Clock,
    interval: float,
    stop: asyncio.Event,
) -> None:
    while not await sleep_unless_stopped(clock, interval, stop):
        try:
            await asyncio.to_thread(store.save, snapshot(loop, clock.now(), tracker.samples_seconds()))
        except OSError as error:
            log.warning("cannot save state", extra={"error": str(error)})


async def _supervise_pod_watchers(
    api: client.ApiClient,
    reader: KubernetesReader,
    loop: ControlLoop,
    tracker: ColdStartTracker,
    clock: Clock,
    stop: asyncio.Event,
) -> None:
    """One pod watch per configured workload, following settings reloads: a workload added
    gets a watch within `WATCHER_SYNC_SECONDS`, a removed one has its watch stopped."""
    watchers: dict[tuple[str, str], tuple[asyncio.Task[None], asyncio.Event]] = {}
    try:
        while True:
            wanted = {key: runtime.settings for key, runtime in loop.runtimes.items()}
            for key in [k for k in watchers if k not in wanted]:
                watchers.pop(key)[1].set()
            for key, workload in wanted.items():
                if key not in watchers or watchers[key][0].done():
                    own_stop = asyncio.Event()
                    task = asyncio.create_task(
                        _watch_pods(api, reader, workload, tracker, own_stop),
                        name=f"pod watcher {key[0]}/{key[1]}",
                    )
                    watchers[key] = (task, own_stop)
            if await sleep_unless_stopped(clock, WATCHER_SYNC_SECONDS, stop):
                break
    finally:
        for task, own_stop in watchers.values():
            own_stop.set()
            task.cancel()
        await asyncio.gather(*(task for task, _ in watchers.values()), return_exceptions=True)


async def _watch_pods(
    api: client.ApiClient,
    reader: KubernetesReader,
    workload: WorkloadSettings,
    tracker: ColdStartTracker,
    stop: asyncio.Event,
) -> None:
    selector = await reader.pod_selector(workload.namespace, workload.target.kind, workload.target_name)
    if selector is None:
        # Retried by the supervisor at its next sync: the target may not exist yet.
        log.warning("no pod selector; cold start uses the default for now", extra={"workload": workload.name})
        return
    await watch_cold_starts(api, (workload.namespace, workload.name), selector, tracker, stop)


async def _prewarm(prewarmer: Prewarmer, loop: ControlLoop) -> None:
    """Raise the floor to the forecast's count while the forecast is what drives the decision
    (load has not arrived yet); hand it back to the owner otherwise."""
    configured: set[PrewarmTarget] = set()
    for runtime in loop.runtimes.values():
        workload, published = runtime.settings, runtime.published
        if workload.prewarm is None:
            continue
        target = PrewarmTarget(workload.namespace, workload.prewarm.kind, workload.prewarm.name)
        configured.add(target)
        if published is None:
            continue
        wanted = published.decision.replicas if published.decision.reason is Reason.FORECAST else None
        await prewarmer.apply(target, wanted)
    # A reload that dropped a workload or its prewarm section hands that target's floor back.
    for target in [t for t in prewarmer.original if t not in configured]:
        await prewarmer.apply(target, None)


async def _restore_prewarm(prewarmer: Prewarmer) -> None:
    for target in list(prewarmer.original):
        await prewarmer.apply(target, None)


async def _hand_back(prewarmer: Prewarmer | None, elector: LeaseElector | None) -> None:
    """At drain, after the loop's last tick: put the owners' floors back while we still hold the
    Lease, then release it. In the other order the restore is skipped (only the leader writes)
    and the raised minReplicas outlives this sidecar."""
    if prewarmer is not None:
        await _restore_prewarm(prewarmer)
    if elector is not None:
        await elector.release()


# --- Process entry ------------------------------------------------------------------------------


def run(settings_path: Path | None, replay: Path | None = None, speedup: float = 60.0) -> int:
    """Run until SIGTERM/SIGINT; the exit status for the shell (2: bad settings or trace)."""
    try:
        settings_file = SettingsFile(settings_path) if settings_path else None
        settings = settings_file.load() if settings_file else Settings()
    except SettingsError as error:
        logging.basicConfig()
        log.error("%s", error)
        return 2
    configure_logging(settings.log_format, settings.log_level)
    simulation: Simulation | None = None
    clock: Clock = SystemClock()
    if replay is not None:
        try:
            settings, simulation, clock = build_replay(replay, settings, speedup)
        except TraceError as error:
            log.error("%s", error)
            return 2
        settings_file = None  # the replay's workload is built from the trace, not the file
    elif not settings.workloads:
        log.error("no workloads configured: give --config FILE, or --replay TRACE for a demo")
        return 2
    try:
        core = load_core()
    except ImportError as error:
        log.error("the decision core or model registry is missing from this install: %s", error)
        return 2
    if settings_file is not None:
        # Only now is the registry known: load again so a misspelt forecast.model fails here,
        # naming the field, instead of failing that workload's every tick (and on each reload).
        settings_file.known_models = core.models
        try:
            settings = settings_file.load()
        except SettingsError as error:
            log.error("%s", error)
            return 2
    try:
        return asyncio.run(run_until_signalled(settings, core, clock, settings_file, simulation))
    except StartupError as error:
        log.error("%s", error)
        return 2


async def run_until_signalled(
    settings: Settings,
    core: Core,
    clock: Clock,
    settings_file: SettingsFile | None = None,
    simulation: Simulation | None = None,
    started: Callable[[Service], None] | None = None,
) -> int:
    """Serve until SIGTERM, SIGINT or SIGHUP (or the end of a replay); 0 after a clean drain."""
    stop = asyncio.Event()
    event_loop = asyncio.get_running_loop()
    for signum in DRAIN_SIGNALS:
        event_loop.add_signal_handler(signum, stop.set)
    try:
        await serve(
            settings,
            core=core,
            clock=clock,
            stop=stop,
            settings_file=settings_file,
            simulation=simulation,
            started=started,
        )
    finally:
        for signum in DRAIN_SIGNALS:
            with contextlib.suppress(Exception):
                event_loop.remove_signal_handler(signum)
    return 0


def build_replay(trace_path: Path, base: Settings, speedup: float) -> tuple[Settings, Simulation, Clock]:
    """The settings, simulated cluster and accelerated clock for `serve --replay`.

    The workload is sized from the trace: a replica serves an eighth of the trace's 99th
    percentile rate flat out, so the busiest minutes need about 8 / 0.7 = 12 replicas at the
    default 70 % target utilization. History starts with the trace; decisions start a quarter of
    the way in (at most one day), so the first forecast has something to learn from.
    """
    trace = load_trace(trace_path)
    known = trace.values[~np.isnan(trace.values)]
    capacity = max(float(np.quantile(known, 0.99)) / 8, 1e-3)
    name = "".join(c if c.isalnum() else "-" for c in trace_path.stem.lower()).strip("-") or "trace"
    load_query = f'sum(rate(requests_total{{workload="{name}"}}[1m]))'
    workload = WorkloadSettings(
        name=name,
        namespace="replay",
        queries={"load": load_query},
        replica_capacity_rps=capacity,
        max_replicas=200,
        default_cold_start_seconds=120.0,
    )
    span = trace.end - trace.start
    start = trace.start + min(span / 4, 86400.0)
    loop_settings = base.loop.model_copy(
        update={
            "history_step_seconds": max(trace.step_seconds, 1.0),
            "history_seconds": max(60.0, min(base.loop.history_seconds, span)),
        }
    )
    settings = base.model_copy(
        update={
            "workloads": (workload,),
            "loop": loop_settings,
            "kubernetes": base.kubernetes.model_copy(update={"enabled": False}),
        }
    )
    clock = AcceleratedClock(start=start, speedup=speedup)
    cluster = SimulatedCluster(clock=clock, cold_start_seconds=120.0, spec=1)
    return settings, Simulation(TraceSignals(trace, load_query), cluster, ends_at=trace.end), clock

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
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web
from kubernetes_asyncio import client
from kubernetes_asyncio.config import ConfigException

from metrics_adapter.authentication import FrontProxyVerifier, KubernetesAccessReviewer
from metrics_adapter.external_metrics_api import (
    ExternalMetricsSettings,
    build_external_metrics_app,
    build_server_ssl_context,
)
from metrics_adapter.keda_scaler import KedaScalerSettings, build_keda_server
from sidecar.clock import Clock, SystemClock
from sidecar.control_loop import ControlLoop, LoopPorts, ReplicaReader, SignalReader, TickReport
from sidecar.core import Core, load_core
from sidecar.kubernetes_client import ColdStartTracker, KubernetesReader, LeaseElector, Prewarmer, connect
from sidecar.latest_decisions import LatestDecisions
from sidecar.listeners import ConnectionLimits, start_listener
from sidecar.logs import configure_logging
from sidecar.pod_watch import supervise_pod_watchers
from sidecar.prewarm_floors import apply_prewarm, hand_back
from sidecar.prometheus_reader import PrometheusReader, QueryStats
from sidecar.readiness import HealthRoutes
from sidecar.replay_progress import ReplayProgress
from sidecar.replay_simulation import InlineExecutor, Simulation, serve_replay
from sidecar.settings import ServerSettings, Settings, SettingsFile
from sidecar.settings_watch import watch_settings
from sidecar.state_store import StateStore, restore_state, save_at_shutdown, save_periodically
from sidecar.telemetry import CallMetrics, Telemetry, build_call_metrics, build_metrics_app, build_telemetry
from simulator.trace import TraceError

log = logging.getLogger(__name__)
# SIGHUP too: a terminal or supervisor closing must not skip the drain (state, floors, Lease).
DRAIN_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


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
        telemetry = build_telemetry(latest, clock.now)
        call_metrics = build_call_metrics(telemetry.registry)
        executor: Executor
        signals: SignalReader
        replicas: ReplicaReader | None = None
        query_stats: QueryStats | None = None
        kube_api = None
        if simulation is not None:
            # Fits inline: the demo makes the decisions `replay` measures, tick for tick.
            signals, replicas, tracker = simulation.signals, simulation.cluster, simulation.tracker
            executor = InlineExecutor()
        else:
            tracker = ColdStartTracker(estimate=core.estimate_cold_start)
            executor = ThreadPoolExecutor(
                max_workers=max(1, min(4, os.cpu_count() or 1)), thread_name_prefix="refit"
            )
            stack.callback(executor.shutdown, wait=False, cancel_futures=True)
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
            restore_state(store, loop, tracker)

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
                stack, service, settings, telemetry, call_metrics, clock, kube_api, simulation is not None
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
                call_metrics,
            )
            prewarmer = Prewarmer(kube_api, elector, call_metrics)

        # A replay tells the person watching what it replays, how far it got and what it did.
        progress = ReplayProgress(simulation, settings.workloads[0]) if simulation is not None else None

        async def after_tick(report: TickReport) -> None:
            health.ticked(report.at)
            for status in loop.statuses().values():
                if status.published is not None and status.published.published_at == report.at:
                    telemetry.record_decision(status.published)
            if prewarmer is not None:
                await apply_prewarm(prewarmer, loop)
            if simulation is not None and progress is not None:
                progress.ticked(latest.get(*simulation.cluster.key))
                await simulation.after_tick(report, latest, stop)

        if started is not None:
            started(service)
        log.info("serving", extra={"workloads": len(loop.statuses()), **service.addresses})
        if progress is not None:
            progress.started(service.addresses)
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
                        save_periodically(store, loop, tracker, clock, interval, stop), name="state saver"
                    )
                if elector is not None:
                    # Released below, after the pre-warm floors are restored: a released Lease makes
                    # every leader-only write (the restore included) a no-op.
                    tasks.create_task(elector.run(stop, release_on_stop=False), name="lease elector")
                if kube_api is not None and isinstance(replicas, KubernetesReader):
                    tasks.create_task(
                        supervise_pod_watchers(kube_api, replicas, loop, tracker, clock, stop),
                        name="pod watchers",
                    )
        finally:
            # Also when a task failed: saving state and handing back floors and the Lease must not
            # depend on every task having ended cleanly.
            if store is not None:
                save_at_shutdown(store, loop, tracker, clock.now())
            await hand_back(prewarmer, elector)
        if progress is not None:
            progress.ended(service.addresses)


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
    call_metrics: CallMetrics,
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
        reviewer=(
            None if kube_api is None else KubernetesAccessReviewer(kube_api, clock.now, metrics=call_metrics)
        ),
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


# --- Process entry ------------------------------------------------------------------------------


def run(
    settings: Settings, settings_file: SettingsFile | None, replay: Path | None = None, speedup: float = 60.0
) -> int:
    """Run until SIGTERM/SIGINT on settings `serve` has loaded and checked; the exit status for
    the shell (2: bad trace or a start-up failure)."""
    configure_logging(settings.log_format, settings.log_level)
    core = load_core()
    simulation: Simulation | None = None
    clock: Clock = SystemClock()
    if replay is not None:
        try:
            settings, simulation = serve_replay(replay, settings, speedup, core.estimate_cold_start)
        except TraceError as error:
            log.error("%s", error)
            return 2
        clock = simulation.clock
        settings_file = None  # the replay's workload is built from the trace, not the file
        # The demo's lines say when in the trace they happened, not when they were printed.
        configure_logging(settings.log_format, settings.log_level, now=clock.now)
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

"""Composition root of the GPU agent: settings -> NVML session, pod-resources client, sampling loop
and HTTP server in one event loop; SIGTERM or SIGINT stops them and shuts NVML down.

NVML being absent (no driver, no `libnvidia-ml.so.1`, a container without the NVIDIA runtime) is a
state, not a crash: the agent keeps serving `/healthz` and `/metrics` with `gpu_agent_nvml_up 0`
and no GPU series, and retries `nvmlInit` every interval, so a driver that loads later is picked up.
`/healthz` reports whether the sampling loop is alive, not whether a GPU is present.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Protocol

import pynvml  # nvidia-ml-py: pure Python ctypes; the driver library loads on nvmlInit
from aiohttp import web

from gpu_agent.exporter import AgentSnapshot, LatestSnapshot, build_app, build_registry
from gpu_agent.nvml_reader import GpuSample, read_driver_version, read_gpus
from gpu_agent.pod_resources import PodRef, PodResourcesClient, PodResourcesError
from gpu_agent.settings import AgentSettings, SettingsError, parse_settings

log = logging.getLogger("gpu_agent")

# The kubelet answers List from memory in milliseconds; 2 s bounds a stuck kubelet well inside the
# default 5 s interval.
POD_RESOURCES_TIMEOUT_SECONDS = 2.0
# /healthz fails after this many intervals without a completed tick: 3 x 5 s + 2 s = 17 s by default.
HEALTHY_MISSED_TICKS = 3


class Clock(Protocol):
    def now(self) -> float:
        """Unix time, for the sample's timestamp."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never steps back, for the cadence and /healthz: an NTP step
        of the wall clock must neither stall sampling nor keep an old sample looking fresh."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class PodLister(Protocol):
    async def list_gpu_devices(self) -> Mapping[str, tuple[PodRef, ...]]: ...


class NvmlSession:
    """Owns `nvmlInit`/`nvmlShutdown` for one `nvml` module; initialises on demand and again after a
    failure, so one bad tick never leaves the agent permanently without GPUs."""

    def __init__(self, nvml: ModuleType) -> None:
        self._nvml = nvml
        self._initialized = False
        self.last_error: str | None = None

    def sample(self) -> tuple[str | None, tuple[GpuSample, ...]] | None:
        """(driver version, samples), or None when NVML is unavailable (reason in `last_error`)."""
        nvml = self._nvml
        try:
            if not self._initialized:
                nvml.nvmlInit()
                self._initialized = True
            gpus = tuple(read_gpus(nvml))
        except nvml.NVMLError as error:
            self.last_error = f"{type(error).__name__}: {error}"
            # Device enumeration failed after init (driver unloaded, reset): start over next tick.
            self.shutdown()
            return None
        self.last_error = None
        return read_driver_version(nvml), gpus

    def shutdown(self) -> None:
        if not self._initialized:
            return
        self._initialized = False
        with contextlib.suppress(self._nvml.NVMLError):
            self._nvml.nvmlShutdown()


class SamplingLoop:
    """Takes one snapshot per interval and publishes it; logs only when a source changes state."""

    def __init__(
        self,
        session: NvmlSession,
        pods: PodLister | None,
        latest: LatestSnapshot,
        clock: Clock,
        interval_seconds: float,
    ) -> None:
        self._session = session
        self._pods = pods
        self._latest = latest
        self._clock = clock
        self._interval_seconds = interval_seconds
        self._nvml_was_up: bool | None = None
        self._pod_error: str | None = None
        self._published_at: float | None = None  # on the monotonic clock

    async def sample_once(self, now: float) -> AgentSnapshot:
        # NVML calls block for microseconds to milliseconds each; a thread keeps scrapes responsive.
        sampled = await asyncio.to_thread(self._session.sample)
        self._log_nvml_state(sampled is not None)
        pods_by_device: Mapping[str, tuple[PodRef, ...]] | None = None
        pod_resources_up: bool | None = None
        if self._pods is not None:
            try:
                pods_by_device = await self._pods.list_gpu_devices()
                pod_resources_up = True
                self._log_pod_error(None)
            except PodResourcesError as error:
                pod_resources_up = False
                self._log_pod_error(str(error))
        driver_version, gpus = sampled if sampled is not None else (None, ())
        return AgentSnapshot(
            sampled_at=now,
            nvml_up=sampled is not None,
            driver_version=driver_version,
            gpus=gpus,
            pods_by_device=pods_by_device,
            pod_resources_up=pod_resources_up,
        )

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            started = self._clock.monotonic()
            try:
                self._latest.publish(await self.sample_once(self._clock.now()))
                self._published_at = self._clock.monotonic()
            except Exception:
                # An unexpected failure skips this tick instead of killing the DaemonSet pod; if it
                # repeats, /healthz turns 503 after HEALTHY_MISSED_TICKS and the kubelet restarts us.
                log.exception("sampling tick failed; keeping the previous snapshot")
            remaining = max(0.0, self._interval_seconds - (self._clock.monotonic() - started))
            sleeping = asyncio.ensure_future(self._clock.sleep(remaining))
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({sleeping, stopping}, return_when=asyncio.FIRST_COMPLETED)
            for task in (sleeping, stopping):
                task.cancel()

    def is_healthy(self) -> bool:
        if self._latest.current is None or self._published_at is None:
            return False
        allowed = HEALTHY_MISSED_TICKS * self._interval_seconds + POD_RESOURCES_TIMEOUT_SECONDS
        return self._clock.monotonic() - self._published_at <= allowed

    def _log_nvml_state(self, up: bool) -> None:
        if up != self._nvml_was_up:
            if up:
                log.info("NVML is up")
            else:
                log.warning("NVML unavailable, exporting gpu_agent_nvml_up 0: %s", self._session.last_error)
        self._nvml_was_up = up

    def _log_pod_error(self, error: str | None) -> None:
        if error != self._pod_error:
            if error is None:
                log.info("pod-resources API reachable again; GPU series carry pod labels")
            else:
                log.warning("GPU series exported without pod labels: %s", error)
        self._pod_error = error


async def serve(settings: AgentSettings, nvml: ModuleType, clock: Clock, stop: asyncio.Event) -> None:
    """Runs the agent until `stop` is set, then stops serving and shuts NVML down."""
    session = NvmlSession(nvml)
    pods = (
        PodResourcesClient(settings.pod_resources_socket, POD_RESOURCES_TIMEOUT_SECONDS)
        if settings.pod_resources_socket is not None
        else None
    )
    latest = LatestSnapshot()
    loop = SamplingLoop(session, pods, latest, clock, settings.interval_seconds)
    app = build_app(build_registry(latest, settings.node_name), loop.is_healthy)
    # No access log: Prometheus scrapes every few seconds and each line would say the same.
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.listen_host, settings.listen_port).start()
        log.info(
            "serving /metrics and /healthz on %s:%d, sampling every %g s",
            settings.listen_host,
            settings.listen_port,
            settings.interval_seconds,
        )
        await loop.run(stop)
    finally:
        await runner.cleanup()
        await asyncio.to_thread(session.shutdown)


async def _serve_until_signalled(settings: AgentSettings, nvml: ModuleType) -> None:
    stop = asyncio.Event()
    event_loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        event_loop.add_signal_handler(signum, stop.set)
    await serve(settings, nvml, SystemClock(), stop)
    log.info("stopped")


def run(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """`python -m gpu_agent`: exit 0 after SIGTERM, 2 on bad settings, 1 when it cannot listen."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = parse_settings(
            sys.argv[1:] if argv is None else argv, os.environ if environ is None else environ
        )
    except SettingsError as error:
        print(f"gpu_agent: {error}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve_until_signalled(settings, pynvml))
    except OSError as error:
        log.error("cannot serve on %s:%d: %s", settings.listen_host, settings.listen_port, error)
        return 1
    return 0

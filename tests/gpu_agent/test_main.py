"""The agent's composition: sampling ticks through the real nvidia-ml-py binding over the fake NVML
library (see conftest.py), the loop on an injected clock, and `python -m gpu_agent` as a process
that loads the fake through LD_LIBRARY_PATH, is scraped over HTTP and stops on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import pynvml
import pytest

from gpu_agent import podresources_pb2 as pb
from gpu_agent.exporter import AgentSnapshot, LatestSnapshot
from gpu_agent.main import HEALTHY_MISSED_TICKS, POD_RESOURCES_TIMEOUT_SECONDS, NvmlSession, SamplingLoop, run
from gpu_agent.nvml_reader import GpuSample
from gpu_agent.pod_resources import PodRef, PodResourcesClient

H100 = "GPU-11111111-2222-3333-4444-555555555555"
REPO_ROOT = Path(__file__).resolve().parents[2]


class FakeClock:
    """Unix time that moves only when the loop sleeps; `wall_offset` steps the wall clock alone,
    as NTP does, while the monotonic clock goes on."""

    def __init__(self, start_seconds: float) -> None:
        self.now_seconds = start_seconds
        self.wall_offset = 0.0

    def now(self) -> float:
        return self.now_seconds + self.wall_offset

    def monotonic(self) -> float:
        return self.now_seconds

    async def sleep(self, seconds: float) -> None:
        self.now_seconds += seconds
        await asyncio.sleep(0)


class RecordingSnapshot(LatestSnapshot):
    """Keeps every published snapshot and sets `stop` after `limit` of them."""

    def __init__(self, stop: asyncio.Event, limit: int) -> None:
        super().__init__()
        self.history: list[AgentSnapshot] = []
        self._stop = stop
        self._limit = limit

    def publish(self, snapshot: AgentSnapshot) -> None:
        super().publish(snapshot)
        self.history.append(snapshot)
        if len(self.history) >= self._limit:
            self._stop.set()


def _gpu(snapshot: AgentSnapshot, index: int) -> GpuSample:
    (gpu,) = [g for g in snapshot.gpus if g.index == index and g.gpu_instance_id is None]
    return gpu


def _triton_on_h100() -> pb.ListPodResourcesResponse:
    devices = [pb.ContainerDevices(resource_name="nvidia.com/gpu", device_ids=[H100])]
    container = pb.ContainerResources(name="server", devices=devices)
    return pb.ListPodResourcesResponse(
        pod_resources=[pb.PodResources(name="triton-0", namespace="ml", containers=[container])]
    )


def _loop(nvml, pods=None, clock=None, latest=None, interval_seconds=5.0) -> SamplingLoop:
    return SamplingLoop(
        NvmlSession(nvml), pods, latest or LatestSnapshot(), clock or FakeClock(1000.0), interval_seconds
    )


async def test_a_gpu_lost_mid_run_drops_only_its_fields_and_comes_back(nvml, monkeypatch):
    loop = _loop(nvml)
    # t=0: all three GPUs answer.
    first = await loop.sample_once(now=0.0)
    # t=5: GPU 0 falls off the bus; its fields go, GPU 2 keeps reading.
    monkeypatch.setenv("FAKE_NVML_LOST", "0")
    second = await loop.sample_once(now=5.0)
    # t=10: the GPU is back (reset); its values return without restarting the agent.
    monkeypatch.delenv("FAKE_NVML_LOST")
    third = await loop.sample_once(now=10.0)
    assert [s.nvml_up for s in (first, second, third)] == [True, True, True]
    assert [_gpu(s, 0).utilization_percent for s in (first, second, third)] == [63, None, 63]
    assert _gpu(second, 0).unavailable == {"device": "GpuIsLost"}
    assert _gpu(second, 2).temperature_celsius == 35.0


async def test_nvml_down_is_reported_then_retried_each_tick(nvml, monkeypatch):
    loop = _loop(nvml)
    monkeypatch.setenv("FAKE_NVML_INIT_RESULT", "9")  # NVML_ERROR_DRIVER_NOT_LOADED
    down = await loop.sample_once(now=0.0)
    monkeypatch.delenv("FAKE_NVML_INIT_RESULT")
    up = await loop.sample_once(now=5.0)
    assert (down.nvml_up, down.gpus, down.driver_version) == (False, (), None)
    assert (up.nvml_up, len(up.gpus), up.driver_version) == (True, 5, "550.54.15")


@pytest.mark.integration
async def test_tick_attributes_gpus_through_the_kubelet(nvml, kubelet, socket_path):
    kubelet.response = _triton_on_h100()
    snapshot = await _loop(nvml, PodResourcesClient(socket_path, 2.0)).sample_once(now=0.0)
    assert (snapshot.pod_resources_up, snapshot.pods_by_device) == (
        True,
        {H100: (PodRef("ml", "triton-0", "server"),)},
    )


async def test_unreachable_kubelet_keeps_gpu_series_and_reports_attribution_missing(nvml, socket_path):
    snapshot = await _loop(nvml, PodResourcesClient(socket_path, 2.0)).sample_once(now=0.0)
    assert (snapshot.pod_resources_up, snapshot.pods_by_device) == (False, None)
    assert _gpu(snapshot, 0).utilization_percent == 63


async def test_loop_samples_once_per_interval_on_the_injected_clock(nvml):
    stop = asyncio.Event()
    clock = FakeClock(1000.0)
    latest = RecordingSnapshot(stop, limit=3)
    loop = _loop(nvml, clock=clock, latest=latest, interval_seconds=5.0)
    await asyncio.wait_for(loop.run(stop), timeout=10)
    assert [s.sampled_at for s in latest.history] == [1000.0, 1005.0, 1010.0]
    assert loop.is_healthy()
    # /healthz fails once the loop has missed HEALTHY_MISSED_TICKS intervals plus the kubelet timeout.
    clock.now_seconds = 1010.0 + HEALTHY_MISSED_TICKS * 5.0 + POD_RESOURCES_TIMEOUT_SECONDS + 0.1
    assert not loop.is_healthy()


async def test_a_wall_clock_stepping_back_neither_stalls_sampling_nor_fakes_health(nvml):
    stop = asyncio.Event()
    clock = FakeClock(1000.0)

    class SteppingBack(RecordingSnapshot):
        def publish(self, snapshot: AgentSnapshot) -> None:
            super().publish(snapshot)
            clock.wall_offset -= 3600.0  # NTP steps the wall clock back an hour after each tick

    latest = SteppingBack(stop, limit=3)
    loop = _loop(nvml, clock=clock, latest=latest, interval_seconds=5.0)
    await asyncio.wait_for(loop.run(stop), timeout=10)
    assert clock.monotonic() <= 1015.0, "ticks 5 s apart, not an hour's sleep after each"
    clock.now_seconds += HEALTHY_MISSED_TICKS * 5.0 + POD_RESOURCES_TIMEOUT_SECONDS + 0.1
    assert not loop.is_healthy(), "an old sample is old whatever the wall clock says"


def test_session_shutdown_calls_nvml_shutdown_once(nvml, monkeypatch, tmp_path):
    marker = tmp_path / "marker"
    monkeypatch.setenv("FAKE_NVML_SHUTDOWN_MARKER", str(marker))
    session = NvmlSession(nvml)
    assert session.sample() is not None
    session.shutdown()
    session.shutdown()
    assert marker.read_text() == "shutdown\n"


async def test_missing_nvml_library_is_a_state_not_a_crash(monkeypatch):
    """No libnvidia-ml.so.1 at all (a node without the driver, a container without the NVIDIA
    runtime). The binding's own loader runs; only its dlopen is made to fail, as the dynamic loader
    does, so the result is the same on a machine that has a driver."""

    def no_library(name: str, *args: object, **kwargs: object) -> object:
        raise OSError(f"{name}: cannot open shared object file: No such file or directory")

    monkeypatch.setattr(pynvml, "nvmlLib", None)
    monkeypatch.setattr(pynvml, "_nvmlGetFunctionPointer_cache", {})
    monkeypatch.setattr(pynvml, "CDLL", no_library)
    session = NvmlSession(pynvml)
    loop = SamplingLoop(session, None, LatestSnapshot(), FakeClock(0.0), 5.0)
    snapshot = await loop.sample_once(now=0.0)
    assert (snapshot.nvml_up, snapshot.gpus, snapshot.driver_version) == (False, (), None)
    assert session.last_error is not None and "LibraryNotFound" in session.last_error


def test_bad_settings_exit_2_naming_the_flag(capsys):
    assert run(["--interval-seconds", "-1"], {"NODE_NAME": "n"}) == 2
    assert "--interval-seconds (env GPU_AGENT_INTERVAL_SECONDS)" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def _start_agent(fake_nvml_dir: Path, port: int, *extra: str, **environment: str):
    env = os.environ | {"LD_LIBRARY_PATH": str(fake_nvml_dir), "PYTHONPATH": str(REPO_ROOT)} | environment
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gpu_agent",
        "--listen",
        f"127.0.0.1:{port}",
        "--interval-seconds",
        "0.2",
        "--node-name",
        "node-a",
        *extra,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def _scrape_when(url: str, predicate, timeout_seconds: float = 60.0) -> str:
    """Polls /metrics until `predicate(text)` holds; the process needs a moment to import and bind."""
    deadline = asyncio.get_running_loop().time() + timeout_seconds
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(f"{url}/metrics") as response:
                    text = await response.text()
                if predicate(text):
                    return text
            except aiohttp.ClientConnectionError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("agent never served the expected metrics")
            await asyncio.sleep(0.05)


async def _healthz_status(url: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/healthz") as response:
        return response.status


async def _terminate(process) -> tuple[int, str]:
    process.send_signal(signal.SIGTERM)
    output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    return process.returncode, output.decode()


@pytest.mark.integration
async def test_agent_process_serves_dcgm_series_with_pods_and_shuts_nvml_down(
    fake_nvml_dir, kubelet, socket_path, tmp_path
):
    kubelet.response = _triton_on_h100()
    marker = tmp_path / "marker"
    port = _free_port()
    process = await _start_agent(
        fake_nvml_dir,
        port,
        "--pod-resources-socket",
        str(socket_path),
        FAKE_NVML_SHUTDOWN_MARKER=str(marker),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        text = await _scrape_when(url, lambda t: 'pod="triton-0"' in t)
        health = await _healthz_status(url)
    finally:
        returncode, output = await _terminate(process)
    utilization = [
        line for line in text.splitlines() if line.startswith("DCGM_FI_DEV_GPU_UTIL{") and H100 in line
    ]
    assert len(utilization) == 1
    assert 'namespace="ml"' in utilization[0] and 'Hostname="node-a"' in utilization[0]
    assert utilization[0].endswith(" 63.0")
    assert health == 200
    assert (returncode, marker.read_text()) == (0, "shutdown\n"), output


@pytest.mark.integration
async def test_agent_process_without_nvml_keeps_serving_nvml_up_0(fake_nvml_dir, tmp_path):
    marker = tmp_path / "marker"
    port = _free_port()
    process = await _start_agent(
        fake_nvml_dir,
        port,
        "--pod-resources-socket",
        "",
        FAKE_NVML_INIT_RESULT="9",
        FAKE_NVML_SHUTDOWN_MARKER=str(marker),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        text = await _scrape_when(url, lambda t: "gpu_agent_nvml_up" in t)
        health = await _healthz_status(url)
    finally:
        returncode, output = await _terminate(process)
    assert "gpu_agent_nvml_up 0.0" in text
    assert [line for line in text.splitlines() if line.startswith("DCGM_FI_DEV")] == []
    assert health == 200
    assert "NVML unavailable" in output and "DriverNotLoaded" in output
    assert returncode == 0
    assert not marker.exists()


@pytest.mark.integration
async def test_agent_process_exits_1_when_it_cannot_listen(fake_nvml_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        process = await _start_agent(fake_nvml_dir, taken.getsockname()[1], "--pod-resources-socket", "")
        output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 1
    assert "cannot serve on 127.0.0.1:" in output.decode()


class FlakyPodLister:
    """A PodLister port whose first call fails with an error nobody anticipated."""

    def __init__(self) -> None:
        self.calls = 0

    async def list_gpu_devices(self):
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("unexpected")
        return {}


async def test_an_unexpected_tick_failure_skips_the_tick_not_the_agent(nvml, caplog):
    stop = asyncio.Event()
    latest = RecordingSnapshot(stop, limit=2)
    loop = _loop(nvml, pods=FlakyPodLister(), clock=FakeClock(1000.0), latest=latest)
    await asyncio.wait_for(loop.run(stop), timeout=10)
    assert [s.sampled_at for s in latest.history] == [1005.0, 1010.0]
    assert "sampling tick failed" in caplog.text

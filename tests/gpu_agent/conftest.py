"""Fixtures at the NVML boundary, shared by the GPU agent's tests.

NVML cannot run here (no GPU, no driver), so `fake_nvml/fake_nvml.c` — our own fake of
`libnvidia-ml.so.1`, described in its header — is compiled with gcc (`fake_nvml_build.py`) once per
session into a temporary directory, and the real, unmodified nvidia-ml-py binding loads it:
- in process, through the binding's own hook: it dlopens a library only while the module global
  `pynvml.nvmlLib` is None, so the fixture sets it to `ctypes.CDLL(<fake>)` and empties the
  binding's function-pointer cache (restored after each test);
- in a subprocess (`python -m gpu_agent`), through `LD_LIBRARY_PATH=<dir>`, which makes the
  binding's `CDLL("libnvidia-ml.so.1")` find the fake exactly as it would find a driver's.
Tests that need the library skip when gcc is absent.

Pod-resources side: `kubelet` is a real grpc.aio server on a Unix socket answering
`v1.PodResourcesLister/List` with whatever response the test sets.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pynvml
import pytest

from gpu_agent import podresources_pb2 as pb
from gpu_agent import podresources_pb2_grpc
from tests.gpu_agent.fake_nvml_build import SONAME, compile_fake_nvml

FAKE_ENVIRONMENT = (
    "FAKE_NVML_GPUS",
    "FAKE_NVML_LOST",
    "FAKE_NVML_INIT_RESULT",
    "FAKE_NVML_SHUTDOWN_MARKER",
    "FAKE_NVML_BAD_NAME",
    "FAKE_NVML_SECOND_CI",
    "FAKE_NVML_GI_ID_RESULT",
)


@pytest.fixture(scope="session")
def fake_nvml_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the fake as `libnvidia-ml.so.1`, for LD_LIBRARY_PATH."""
    directory = tmp_path_factory.mktemp("fake_nvml")
    compile_fake_nvml(directory / SONAME)
    return directory


@pytest.fixture(scope="session")
def old_driver_nvml_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fake without `nvmlDeviceGetComputeRunningProcesses_v3`, like a driver older than the binding.

    A different soname and file keep the dynamic loader from handing back the full fake."""
    directory = tmp_path_factory.mktemp("fake_nvml_old")
    return compile_fake_nvml(
        directory / "libnvidia-ml-old.so.1", "libnvidia-ml-old.so.1", "-DFAKE_NVML_NO_PROCESSES_V3"
    )


def _load(monkeypatch: pytest.MonkeyPatch, library: Path) -> Iterator[object]:
    for name in FAKE_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(pynvml, "nvmlLib", ctypes.CDLL(str(library)))
    monkeypatch.setattr(pynvml, "_nvmlGetFunctionPointer_cache", {})
    monkeypatch.setattr(pynvml, "_nvmlLib_refcount", 0)
    yield pynvml
    # Leave the fake uninitialised for the next test; Uninitialized here just means it already is.
    with contextlib.suppress(pynvml.NVMLError):
        pynvml.nvmlShutdown()


@pytest.fixture
def nvml(monkeypatch: pytest.MonkeyPatch, fake_nvml_dir: Path) -> Iterator[object]:
    """The real `pynvml` module bound to the fake library, not yet initialised."""
    yield from _load(monkeypatch, fake_nvml_dir / "libnvidia-ml.so.1")


@pytest.fixture
def old_driver_nvml(monkeypatch: pytest.MonkeyPatch, old_driver_nvml_path: Path) -> Iterator[object]:
    yield from _load(monkeypatch, old_driver_nvml_path)


class Kubelet(podresources_pb2_grpc.PodResourcesListerServicer):
    """Answers List with a configurable response, or fails / stalls like a sick kubelet."""

    def __init__(self) -> None:
        self.response = pb.ListPodResourcesResponse()
        self.failure: grpc.StatusCode | None = None
        self.delay_seconds = 0.0

    async def List(self, request, context):  # noqa: N802 - gRPC method name
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        if self.failure is not None:
            await context.abort(self.failure, "kubelet is restarting")
        return self.response


@pytest.fixture
def socket_path() -> Iterator[Path]:
    # Unix socket paths are limited to 107 bytes; pytest's tmp_path can exceed that.
    with tempfile.TemporaryDirectory(prefix="podres") as directory:
        yield Path(directory) / "kubelet.sock"


@pytest.fixture
async def kubelet(socket_path: Path) -> AsyncIterator[Kubelet]:
    servicer = Kubelet()
    server = grpc.aio.server()
    podresources_pb2_grpc.add_PodResourcesListerServicer_to_server(servicer, server)
    server.add_insecure_port(f"unix:{socket_path}")
    await server.start()
    yield servicer
    await server.stop(grace=None)

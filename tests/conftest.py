"""Shared fixtures: a real Prometheus on a free loopback port, and a small exporter it scrapes.

Prometheus is the Debian package's binary (`make system-deps`); when it is not on PATH the tests
that need it skip and say so. Each server gets a temporary data directory; history is backfilled
with `promtool tsdb create-blocks-from openmetrics` before start, live values come from scraping
`LoadExporter` every second.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path

import pytest
from aiohttp import web

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")


async def eventually(
    check: Callable[[], object], timeout: float = 60.0, what: str = "condition", debug=lambda: ""
) -> None:
    """Wait until `check()` (or the awaitable it returns) is true. The timeout is a bound for a
    hung test, not a wait: a busy machine may take a while, so it is generous."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}: {debug()}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PrometheusServer:
    """One Prometheus process; `stop()` and `start()` again keep the port and the data, which is
    what the outage tests need."""

    def __init__(self, data_dir: Path, scrape_targets: Iterable[str], scrape_interval_seconds: float) -> None:
        assert PROMETHEUS is not None
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None
        self._log = data_dir.parent / f"prometheus-{self.port}.log"
        targets = ", ".join(f"'{t}'" for t in scrape_targets)
        self._config = data_dir.parent / f"prometheus-{self.port}.yml"
        self._config.write_text(
            "global:\n"
            f"  scrape_interval: {scrape_interval_seconds:g}s\n"
            f"  evaluation_interval: {scrape_interval_seconds:g}s\n"
            "scrape_configs:\n"
            "  - job_name: load\n"
            f"    static_configs: [{{targets: [{targets}]}}]\n"
        )

    def backfill(self, openmetrics: str) -> None:
        """Write history as TSDB blocks; call before `start()`."""
        assert PROMTOOL is not None, "promtool ships with prometheus"
        source = self.data_dir.parent / "backfill.om"
        source.write_text(openmetrics)
        subprocess.run(
            [PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", str(source), str(self.data_dir)],
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        """Start and wait until ready (about a second). Blocking on purpose: an exporter on the
        test's event loop only misses a scrape meanwhile, and readiness needs no scrape."""
        assert PROMETHEUS is not None
        with self._log.open("ab") as log:
            self._process = subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={self._config}",
                    f"--storage.tsdb.path={self.data_dir}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--storage.tsdb.retention.time=30d",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self._log.read_text()[-2000:]}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(self.url + "/-/ready", timeout=1) as ready,
            ):
                if ready.status == 200:
                    return
            time.sleep(0.05)
        raise RuntimeError("prometheus did not become ready in 15 s")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None


def build_prometheus_factory(root: Path) -> Iterator[Callable[..., PrometheusServer]]:
    if PROMETHEUS is None:
        pytest.skip("prometheus is not installed (Debian package `prometheus`; `make system-deps`)")
    servers: list[PrometheusServer] = []

    def build(scrape_targets: Iterable[str] = (), scrape_interval_seconds: float = 1.0) -> PrometheusServer:
        data_dir = root / f"prometheus-{len(servers)}"
        data_dir.mkdir()
        server = PrometheusServer(data_dir, scrape_targets, scrape_interval_seconds)
        servers.append(server)
        return server

    yield build
    for server in servers:
        server.stop()


@pytest.fixture
def prometheus_factory(tmp_path: Path) -> Iterator[Callable[..., PrometheusServer]]:
    """Build (not start) Prometheus servers; every one is stopped at teardown."""
    yield from build_prometheus_factory(tmp_path)


@pytest.fixture(scope="module")
def module_prometheus_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., PrometheusServer]]:
    """The same, shared by a module's tests (for read-only, backfilled servers)."""
    yield from build_prometheus_factory(tmp_path_factory.mktemp("prometheus"))


class LoadExporter:
    """A /metrics endpoint whose gauges the test sets: `values[(name, labels)] = number`.
    Labels are a tuple of (key, value) pairs; values are written verbatim (NaN included)."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self.address = ""

    def set(self, name: str, value: float, **labels: str) -> None:
        self.values[(name, tuple(sorted(labels.items())))] = value

    async def handle(self, request: web.Request) -> web.Response:
        lines = []
        for (name, labels), value in sorted(self.values.items()):
            rendered = ",".join(f'{k}="{v}"' for k, v in labels)
            lines.append(f"{name}{{{rendered}}} {value}")
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")


@pytest.fixture
async def load_exporter() -> AsyncIterator[LoadExporter]:
    exporter = LoadExporter()
    app = web.Application()
    app.router.add_get("/metrics", exporter.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    exporter.address = f"127.0.0.1:{port}"
    yield exporter
    await runner.cleanup()

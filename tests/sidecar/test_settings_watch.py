"""The settings watcher of a running service: good files applied, every bad one rejected in one
log line while the old settings run, and no file (huge, an alias bomb) ever stalls the event loop."""

from __future__ import annotations

import asyncio
import logging
import os
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sidecar.control_loop import ControlLoop, LoopPorts
from sidecar.latest_decisions import LatestDecisions
from sidecar.settings import SettingsFile
from sidecar.settings_watch import watch_settings
from tests.fakes import FakeClock, FlatForecaster, ScriptedSignals, proportional_decide
from tests.sidecar.hostile_settings import alias_bomb, oversize

SETTINGS = textwrap.dedent(
    """
    kubernetes: {enabled: false}
    server: {host: 127.0.0.1, health_port: 0, http_port: 0, grpc_port: 0}
    workloads:
      - name: llama
        namespace: ml
        queries: {load: 'sum(load_rps{workload="$workload"})'}
        replica_capacity_rps: 10
        max_replicas: 20
    """
)


def replace(path: Path, text: str) -> None:
    """Swap the content in at once, as a ConfigMap update does: the watcher polls in a thread and
    would otherwise read a half-written file (a valid, different one, now and then)."""
    staging = path.with_suffix(".new")
    staging.write_text(text)
    os.replace(staging, path)


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


class Watched:
    def __init__(self, path: Path) -> None:
        path.write_text(SETTINGS)
        self.path = path
        self.file = SettingsFile(path)
        self.settings = self.file.load()
        self.clock = FakeClock()
        self.loop = ControlLoop(
            workloads=self.settings.workloads,
            settings=self.settings.loop,
            ports=LoopPorts(
                signals=ScriptedSignals(),
                decide=proportional_decide,
                models={"auto": FlatForecaster},
                latest=LatestDecisions(),
                clock=self.clock,
            ),
        )
        self.stop = asyncio.Event()

    def max_replicas(self) -> int:
        return self.loop.status("ml", "llama").policy.max_replicas

    def start(self) -> asyncio.Task[None]:
        return asyncio.create_task(watch_settings(self.file, self.loop, self.clock, self.stop, self.settings))


def rejections(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "rejected" in r.getMessage()]


async def test_good_files_apply_and_a_bad_one_keeps_the_old(tmp_path: Path, caplog):
    watched = Watched(tmp_path / "settings.yaml")
    watcher = watched.start()
    replace(watched.path, SETTINGS.replace("max_replicas: 20", "max_replicas: 7"))
    await until(lambda: watched.max_replicas() == 7)

    with caplog.at_level(logging.ERROR):
        replace(watched.path, SETTINGS.replace("max_replicas: 20", "max_replicas: lots"))
        await until(lambda: bool(rejections(caplog)))
    assert watched.max_replicas() == 7, "the bad file changed nothing"
    rejected = rejections(caplog)
    assert len(rejected) == 1 and "max_replicas='lots'" in rejected[0].error

    # A section bound at start (the Prometheus client) is not silently ignored: it is named.
    with caplog.at_level(logging.WARNING):
        replace(
            watched.path,
            SETTINGS.replace("max_replicas: 20", "max_replicas: 9")
            + "prometheus: {url: 'http://elsewhere:9090'}\n",
        )
        await until(lambda: watched.max_replicas() == 9)
    restart = [r for r in caplog.records if "only after a restart" in r.getMessage()]
    assert len(restart) == 1 and restart[0].sections == ["prometheus"]

    watched.stop.set()
    await asyncio.wait_for(watcher, 5)


@pytest.mark.parametrize(
    "content",
    [pytest.param(alias_bomb(), id="an alias bomb"), pytest.param(oversize(50), id="a 50 MB file")],
)
async def test_a_hostile_file_is_rejected_in_one_line_without_stalling_the_loop(
    tmp_path: Path, caplog, content: str
):
    """Findings 1 and 2 on reload: the bomb once took the watcher (and with it the service) down
    and froze /healthz for 15 s; a huge file was parsed on the event loop. Now the loop keeps
    turning (measured by a task that notes its longest wait), the file is rejected once, in one
    short line, and the old settings keep running."""
    watched = Watched(tmp_path / "settings.yaml")
    longest_gap = 0.0
    beating = True

    async def heartbeat() -> None:
        nonlocal longest_gap
        last = time.monotonic()
        while beating:
            await asyncio.sleep(0.005)
            now = time.monotonic()
            longest_gap, last = max(longest_gap, now - last), now

    beat = asyncio.create_task(heartbeat())
    watcher = watched.start()
    with caplog.at_level(logging.ERROR):
        replace(watched.path, content)
        await until(lambda: bool(rejections(caplog)), timeout=20)
    beating = False
    await beat
    rejected = rejections(caplog)
    assert len(rejected) == 1 and len(rejected[0].error) < 400
    assert watched.max_replicas() == 20
    assert not watcher.done(), "the watcher is still running"
    assert longest_gap < 0.5, f"the event loop stalled {longest_gap:.2f} s"

    replace(watched.path, SETTINGS.replace("max_replicas: 20", "max_replicas: 5"))
    await until(lambda: watched.max_replicas() == 5)
    watched.stop.set()
    await asyncio.wait_for(watcher, 5)

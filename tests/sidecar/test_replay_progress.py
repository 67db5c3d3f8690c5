"""What `serve --replay` (`make run`) prints: lines stamped with trace time, one line per changed
decision, a progress line every simulated hour and a summary at the end naming where to look next.
The real command runs over a short trace, unpaced, and ends by itself at the trace's end; the
figures it prints are checked against `replay`'s run of the same trace (the same code path)."""

from __future__ import annotations

import asyncio
import io
import logging
import re
import textwrap
from itertools import pairwise
from pathlib import Path

import numpy as np

from sidecar.core import load_core
from sidecar.logs import configure_logging
from sidecar.main import serve
from sidecar.replay_simulation import ControlLoopPolicy, serve_replay, workload_name
from sidecar.settings import LogFormat, Settings
from simulator.metrics_pipeline import TraceMetrics
from simulator.replay import ReplaySettings, default_capacity_rps
from simulator.trace import read_trace
from tests.sidecar.test_main import run_cli
from tests.sidecar.test_replay_simulation import write_trace

CORE = load_core()
HOURS = 3
# The trace starts at Unix time 0: a line stamped with wall time could not match.
STAMP = re.compile(r"^1970-01-01 (\d\d):(\d\d):(\d\d),000 INFO ")
DECISION = re.compile(r"decision (none|\d+) -> (\d+) \((\w+)\)")
SETTINGS = textwrap.dedent(
    """
    server: {host: 127.0.0.1, health_port: 0, http_port: 0, grpc_port: 0}
    """
)


def _trace_seconds(line: str) -> int:
    match = STAMP.match(line)
    assert match, f"not stamped with trace time: {line}"
    hours, minutes, seconds = map(int, match.groups())
    return 3600 * hours + 60 * minutes + seconds


def test_make_run_logs_trace_time_changes_progress_and_a_summary(tmp_path: Path):
    trace = write_trace(tmp_path / "wave.csv", hours=HOURS)
    config = tmp_path / "settings.yaml"
    config.write_text(SETTINGS)
    result = run_cli("serve", "--config", str(config), "--replay", str(trace), "--speedup", "1e9")
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()

    stamps = [_trace_seconds(line) for line in lines]
    assert stamps == sorted(stamps) and stamps[-1] < HOURS * 3600

    # One line per change of count or reason, never a repeat of the line before.
    decisions = [DECISION.search(line).groups() for line in lines if DECISION.search(line)]
    assert decisions[0][0] == "none"
    for (_, before, before_reason), (previous, after, reason) in pairwise(decisions):
        assert previous == before
        assert (after, reason) != (before, before_reason)
    assert all(len(line) < 200 for line in lines if DECISION.search(line))

    progress = [line for line in lines if " progress: " in line]
    assert [_trace_seconds(line) for line in progress] == [3600, 7200]
    assert "33% of the trace" in progress[0] and "67% of the trace" in progress[1]

    (summary,) = [line for line in lines if " replay finished at " in line]
    replicas = [int(after) for _, after, _ in decisions]
    assert f"replicas {min(replicas)}..{max(replicas)}, {len(decisions)} decision changes" in summary
    assert "(100% of the trace)" in summary
    by_reason = summary.split("by reason: ")[1]
    ticks = {reason: int(count) for reason, count in re.findall(r"(\w+) (\d+)(?=[,;])", by_reason)}
    assert sum(ticks.values()) == HOURS * 3600 // 15

    replayed = _replay(trace)
    gpu_hours = float(np.sum(replayed.cluster.deployment.provisioned_per_second())) / 3600
    assert f"{gpu_hours:.1f} GPU-hours (1 GPU per replica)" in summary
    assert ticks == {r: sum(1 for _, _, x in replayed.decisions if x == r) for r in ticks}

    (next_line,) = [line for line in lines if " next: " in line]
    assert re.search(r"http://127\.0\.0\.1:\d+/metrics", next_line)
    assert "/apis/external.metrics.k8s.io/v1beta1/namespaces/replay/desired_replicas" in next_line
    assert "README.md" in next_line and "predictive-autoscaler.json" in next_line


def _replay(trace_path: Path):
    trace = read_trace(trace_path)
    demand = trace.demand_per_second()
    settings = ReplaySettings(replica_capacity_rps=default_capacity_rps(trace))
    policy = ControlLoopPolicy(CORE, workload=workload_name(trace_path))
    return policy.simulate(demand, trace.start_seconds, TraceMetrics(demand, trace.start_seconds), settings)


class _StopOnFirstProgress(logging.Handler):
    def __init__(self, stop: asyncio.Event) -> None:
        super().__init__()
        self.stop = stop

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("progress:"):
            self.stop.set()


async def test_a_stopped_replay_says_so_and_summarizes_what_it_replayed(tmp_path: Path):
    trace = write_trace(tmp_path / "wave.csv", hours=HOURS)
    base = Settings(server={"host": "127.0.0.1", "health_port": 0, "http_port": 0, "grpc_port": 0})
    settings, simulation = serve_replay(trace, base, None, CORE.estimate_cold_start)
    stream = io.StringIO()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stop = asyncio.Event()
    try:
        configure_logging(LogFormat.TEXT, "INFO", stream, now=simulation.clock.now)
        root.addHandler(_StopOnFirstProgress(stop))
        served = serve(settings, core=CORE, clock=simulation.clock, stop=stop, simulation=simulation)
        await asyncio.wait_for(served, 120)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    lines = stream.getvalue().splitlines()
    stopped = " replay stopped at 1970-01-01 01:00 UTC (33% of the trace)"
    (summary,) = [line for line in lines if stopped in line]
    assert not [line for line in lines if "replay finished" in line]
    assert _trace_seconds(summary) <= 3600 + 15

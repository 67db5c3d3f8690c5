"""How the control loop scales: tick duration for 1,000 workloads in one process, refit
throughput, resident memory. Targets: a tick under 1 s for 1,000 workloads, RSS under 1 GB.

Two signal sources, so the loop's own cost and the Prometheus round trips are both visible:
  memory      an in-process source (the loop, forecasts and decisions alone);
  prometheus  a real Prometheus on loopback holding one backfilled series per workload
              (skipped when the `prometheus` binary is absent).
The baseline, measured in the same run, is the same tick with 100 workloads: the ratio shows
whether cost grows linearly (about 10x) or worse. Fits/s is the refit throughput through the
loop's executor (2 threads) on 7 days of 60 s history; RSS is the whole process after each row.
CPU p50 is the median of the process's CPU time per tick (every thread): on a machine shared with
other work the wall time also counts the waits for a core, which CPU time leaves out; the
Prometheus server's own CPU is in neither.

Usage: .venv/bin/python bench/loop_scale.py [--workloads 1000] [--ticks 20] [--no-prometheus] [--model NAME]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from forecasting import DEFAULT_MODEL  # noqa: E402
from forecasting.series import LoadSeries  # noqa: E402
from sidecar.control_loop import ControlLoop, LoopPorts  # noqa: E402
from sidecar.core import load_core  # noqa: E402
from sidecar.latest_decisions import LatestDecisions  # noqa: E402
from sidecar.prometheus_reader import PrometheusReader  # noqa: E402
from sidecar.settings import LoopSettings, QuerySettings, WorkloadSettings  # noqa: E402

STEP = 60.0
HISTORY_SECONDS = 7 * 86400.0


def core():
    """The real decision core and model registry (sidecar.main.load_core)."""
    the_core = load_core()
    return the_core.decide, the_core.models


def daily(t: np.ndarray, phase: float) -> np.ndarray:
    return 50 + 40 * np.sin(2 * np.pi * (t / 86400.0) + phase)


class MemorySignals:
    """Seven days of a daily cycle per workload; instant values from the same curve."""

    def __init__(self, now: float) -> None:
        self.now = now

    async def instant(self, query: str, at: float):
        from autoscaler.observations import Reading

        phase = hash(query) % 628 / 100
        return Reading(float(daily(np.array([at]), phase)[0]), at)

    async def history(self, query: str, start: float, end: float, step_seconds: float):
        phase = hash(query) % 628 / 100
        first = np.floor(start / step_seconds) * step_seconds
        times = np.arange(first, end, step_seconds)
        return LoadSeries(first, step_seconds, daily(times, phase))


def workloads(count: int, model: str) -> list[WorkloadSettings]:
    return [
        WorkloadSettings(
            name=f"w{i:04d}",
            namespace="bench",
            queries=QuerySettings(load='load_rps{workload="$workload"}'),
            replica_capacity_rps=10.0,
            forecast={"model": model},
        )
        for i in range(count)
    ]


async def measure(count: int, ticks: int, signals, clock_now: float, refit: bool, model: str) -> dict:
    decide, models = core()
    executor = ThreadPoolExecutor(max_workers=2)

    class Clock:
        def __init__(self) -> None:
            self.t = clock_now

        def now(self) -> float:
            return self.t

        async def sleep(self, seconds: float) -> None:
            self.t += seconds

    clock = Clock()
    loop = ControlLoop(
        workloads=workloads(count, model),
        settings=LoopSettings(
            tick_seconds=15,
            history_seconds=HISTORY_SECONDS,
            history_step_seconds=STEP,
            refit_interval_seconds=86400,
            workload_timeout_seconds=60,
        ),
        ports=LoopPorts(
            signals=signals,
            decide=decide,
            models=models,
            latest=LatestDecisions(),
            clock=clock,
            executor=executor,
        ),
    )
    # First tick reads 7 days of history per workload and queues every fit.
    started = time.perf_counter()
    await loop.tick()
    first_tick = time.perf_counter() - started
    fit_started = time.perf_counter()
    fits = sum(status.refitting for status in loop.statuses().values())
    if refit:
        await loop.settle()
    fit_seconds = time.perf_counter() - fit_started
    durations, cpu = [], []
    for _ in range(ticks):
        clock.t += 15
        started, cpu_started = time.perf_counter(), time.process_time()
        report = await loop.tick()
        durations.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
        assert not report.failed, list(report.failed.items())[:3]
    executor.shutdown(wait=False, cancel_futures=True)
    durations.sort()
    return {
        "first_tick_s": first_tick,
        "p50_s": statistics.median(durations),
        "p99_s": durations[min(len(durations) - 1, int(0.99 * len(durations)))],
        "cpu_p50_s": statistics.median(cpu),
        "fits": fits,
        "fit_s": fit_seconds,
    }


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def start_prometheus(count: int, now: float, root: Path) -> tuple[subprocess.Popen, str]:
    """Backfill a day per workload (the reader splits longer ranges itself) and start."""
    lines = ["# TYPE load_rps gauge"]
    end = int(now // STEP * STEP) - 60
    times = np.arange(end - 86400, end + 1, STEP)
    for i in range(count):
        values = daily(times, i / 100)
        lines += [
            f'load_rps{{workload="w{i:04d}"}} {v:.3f} {int(t)}' for t, v in zip(times, values, strict=True)
        ]
    lines.append("# EOF")
    (root / "in.om").write_text("\n".join(lines) + "\n")
    data = root / "data"
    subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(root / "in.om"), str(data)],
                   check=True, capture_output=True)  # fmt: skip
    (root / "prometheus.yml").write_text("global: {scrape_interval: 15s}\n")
    # A free port, not a fixed one: another Prometheus (a test's, a second bench) may be up.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        ["prometheus", f"--config.file={root / 'prometheus.yml'}", f"--storage.tsdb.path={data}",
         f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=30d", "--log.level=error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            with urllib.request.urlopen(url + "/-/ready", timeout=1):
                return process, url
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("prometheus did not start")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", type=int, default=1000)
    parser.add_argument("--ticks", type=int, default=20)
    parser.add_argument("--no-prometheus", action="store_true")
    # The shipped default model, so the tick target is measured on what `serve` runs; --model
    # seasonal_naive_daily (fitted, unlike recent_quantiles) shows the refit plumbing's fits/s.
    parser.add_argument("--model", default=DEFAULT_MODEL)
    args = parser.parse_args()
    _, models = core()
    if args.model not in models:
        raise SystemExit(f"--model {args.model!r} is not one of {sorted(models)}")
    now = time.time()
    print(
        f"core: autoscaler.decide + MODELS[{args.model!r}]; history {HISTORY_SECONDS / 86400:g} days at"
        f" {STEP:g} s; {args.ticks} ticks measured"
    )
    rows = []
    for count in (100, args.workloads):
        result = await measure(count, args.ticks, MemorySignals(now), now, True, args.model)
        rows.append(("memory", count, result, rss_mb()))
    if not args.no_prometheus and shutil.which("prometheus"):
        with tempfile.TemporaryDirectory() as tmp:
            process, url = start_prometheus(args.workloads, now, Path(tmp))
            try:
                async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as session:
                    for count in (100, args.workloads):
                        reader = PrometheusReader(session, url, clock=type("C", (), {"now": lambda s: now})())
                        # Measured after the first fits finish, as the memory rows are: the ticks
                        # that overlap a mass refit are the first-tick column's story, not p99's.
                        result = await measure(count, args.ticks, reader, now, True, args.model)
                        rows.append(("prometheus", count, result, rss_mb()))
            finally:
                process.terminate()
                process.wait()
    print()
    print(f"{'source':<11}{'workloads':>10}{'first tick s':>14}{'tick p50 s':>12}{'tick p99 s':>12}"
          f"{'CPU p50 s':>11}{'vs 100':>8}{'fits/s':>11}{'RSS MB':>9}")  # fmt: skip
    baseline: dict[str, float] = {}
    for source, count, result, rss in rows:
        if count == 100:
            baseline[source] = result["p50_s"]
        ratio = result["p50_s"] / baseline[source] if baseline.get(source) else float("nan")
        # Fits are measured once, on the in-memory source; the Prometheus rows reuse no fits.
        fits = (
            f"{result['fits'] / result['fit_s']:.1f}" if source == "memory" and result["fit_s"] > 0 else "-"
        )
        print(f"{source:<11}{count:>10}{result['first_tick_s']:>14.3f}{result['p50_s']:>12.3f}"
              f"{result['p99_s']:>12.3f}{result['cpu_p50_s']:>11.3f}{ratio:>8.1f}{fits:>11}"
              f"{rss:>9.0f}")  # fmt: skip
    # The targets, judged on the full-size rows: tick p99 under 1 s, process RSS under 1 GB.
    full = [(source, result, rss) for source, count, result, rss in rows if count == args.workloads]
    slowest = max(result["p99_s"] for _, result, _ in full)
    peak_mb = max(rss for _, _, rss in full)
    verdict = "meets" if slowest < 1.0 and peak_mb < 1024 else "MISSES"
    print(
        f"{args.workloads} workloads: slowest tick p99 {slowest:.3f} s (target < 1 s), RSS {peak_mb:.0f} MB"
        f" (target < 1024 MB): {verdict} the targets"
    )


if __name__ == "__main__":
    asyncio.run(main())

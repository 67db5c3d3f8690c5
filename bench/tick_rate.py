"""What a faster control-loop tick buys, measured through the shipped path at two scrape delays.

Usage: .venv/bin/python bench/tick_rate.py [--traces nasa-http-1995/series_jul.csv,...]
    [--days 4] [--ticks 15,5] [--scrape-delays 15,5] [--cold-start-seconds 120] [--workers 2]

The issue "Objective instead of knobs" asks for a loop that drops to a fast tick while the load
leaves its band, and for what that buys at a 15 s and a 5 s scrape. This bench measures the most
any such rule could buy: the whole replay at the fast tick, against the default 15 s, for each
scrape delay (the age of the newest sample the loop reads; `replay --scrape-delay-seconds`).
Each row is one replay of the first `--days` days of a trace under ../shared/data: the predictive
policy through the example HPA (its default objective and model), cold start
`--cold-start-seconds` median (lognormal per pod, spread 0.2, seed 0), a replica serving the
trace's p99 rate / 20 flat out, and HPA at target 0.7 at the same scrape delay for reference.
Replays are deterministic (seeded cold starts, inline fits), so one run per row. The example HPA
reads the published count at its own 15 s sync: a tick faster than that can only make the number
it reads fresher. Skips (exit 0) when ../shared/data is absent.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from sidecar.core import load_core
from sidecar.replay_command import build_policy
from sidecar.replay_simulation import ControlLoopPolicy, LoopOptions
from sidecar.settings import LoopSettings
from simulator.replay import ReplaySettings, default_capacity_rps, replay_trace
from simulator.report import scores
from simulator.trace import read_trace

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
DEFAULT_TRACES = "nasa-http-1995/series_jul.csv,twitter-stream-2021-08/series.csv"

# (trace, days, scrape delay s, tick s or None for HPA, cold start s)
Job = tuple[str, float, float, float | None, int]
# (violation, replica-hours, wall s)
Figures = tuple[float, float, float]


def run_job(job: Job) -> Figures:
    relative, days, delay, tick, cold_start = job
    trace = read_trace(DATA / relative).first_days(days)
    settings = ReplaySettings(
        replica_capacity_rps=default_capacity_rps(trace),
        cold_start_seconds=cold_start,
        scrape_delay_seconds=delay,
    )
    policy = (
        build_policy("hpa", settings)
        if tick is None
        else ControlLoopPolicy(load_core(), LoopOptions(), loop=LoopSettings(tick_seconds=tick))
    )
    began = time.perf_counter()
    run = replay_trace(trace, settings, [policy])
    figure = scores(run)[0]
    return figure.violation_ratio, figure.replica_hours, time.perf_counter() - began


def _numbers(text: str) -> list[float]:
    return [float(item) for item in text.split(",") if item.strip()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", default=DEFAULT_TRACES, help="comma-separated, under ../shared/data")
    parser.add_argument("--days", type=float, default=4.0, help="replay the first days of each (default 4)")
    parser.add_argument("--ticks", default="15,5", help="control-loop ticks in seconds (default 15,5)")
    parser.add_argument("--scrape-delays", default="15,5", help="scrape delays in seconds (default 15,5)")
    parser.add_argument("--cold-start-seconds", type=int, default=120)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"skipped: {DATA} is absent")
        return 0
    ticks, delays = _numbers(args.ticks), _numbers(args.scrape_delays)
    if not ticks or any(not 1 <= t <= 300 for t in ticks):
        parser.error(f"--ticks={args.ticks}: give seconds between 1 and 300, e.g. 15,5")
    if not delays or any(d < 0 for d in delays):
        parser.error(f"--scrape-delays={args.scrape_delays}: give seconds >= 0, e.g. 15,5")
    traces = [t.strip() for t in args.traces.split(",") if t.strip()]
    missing = [t for t in traces if not (DATA / t).is_file()]
    if missing:
        parser.error(f"--traces: no such file under {DATA}: {', '.join(missing)}")
    jobs: list[Job] = [
        (trace, args.days, delay, tick, args.cold_start_seconds)
        for trace in traces
        for delay in delays
        for tick in (None, *ticks)
    ]
    began = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        results = list(pool.map(run_job, jobs))
    wall = time.perf_counter() - began
    print(
        f"first {args.days:g} days, cold start {args.cold_start_seconds} s median (spread 0.2, seed 0), "
        "capacity p99/20, predictive through the example HPA (default objective and model)\n"
    )
    print("| trace | scrape delay s | policy | violation | replica-hours | vs 15 s tick | wall s |")
    print("|---|---:|---|---:|---:|---:|---:|")
    reference: dict[tuple[str, float], float] = {}
    for (trace, _, delay, tick, _), (_, hours, _) in zip(jobs, results, strict=True):
        if tick == LoopSettings().tick_seconds:
            reference[(trace, delay)] = hours
    for (trace, _, delay, tick, _), (violation, hours, seconds) in zip(jobs, results, strict=True):
        label = "hpa@0.7" if tick is None else f"predictive, tick {tick:g} s"
        base = reference.get((trace, delay))
        versus = "-" if tick is None or base is None else f"{hours / base - 1:+.1%}"
        print(
            f"| {trace} | {delay:g} | {label} | {violation:.5f} | {hours:,.1f} | {versus} | {seconds:.0f} |"
        )
    print(f"\n{len(jobs)} replays, {args.workers} workers, {wall:.0f} s wall")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

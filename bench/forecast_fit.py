"""Time refitting the `auto` forecaster on 1,000 series of 7 days at 1-minute steps.

Run: .venv/bin/python bench/forecast_fit.py [--series 1000] [--workers 2] [--repeats 3] [--models auto]
Series are 7-day windows of the NASA July and August traces at staggered offsets, each scaled
and perturbed so that no two are equal (a synthetic daily cycle when ../shared/data is absent).
Each fit is given the goal the control loop gives at a refit with the default settings (the
default objective, target and cold start; autoscaler.prewarm.scaling_goal), which is what
`objective_choice` scores its candidates against; the other models ignore it.
Prints seconds per run (median of the repeats), the last-value fit as a baseline measured in the
same run, and the peak resident memory of the process tree. Target: under 60 s and 1.5 GB.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from autoscaler.prewarm import scaling_goal
from forecasting import MODELS, LoadSeries
from forecasting.model import ScalingGoal
from sidecar.settings import QuerySettings, WorkloadSettings
from simulator.trace import read_trace

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "nasa-http-1995"
WEEK_STEPS = 7 * 1440
HORIZON_STEPS = 30


def build_series(count: int, seed: int = 7) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    sources = (
        [read_trace(DATA / name).rate_rps() for name in ("series_jul.csv", "series_aug.csv")]
        if DATA.is_dir()
        else []
    )
    if not sources:
        minutes = np.arange(4 * WEEK_STEPS)
        sources = [1.0 + 0.8 * np.sin(2 * np.pi * minutes / 1440) + rng.gamma(2.0, 0.1, len(minutes))]
    series = []
    for index in range(count):
        source = sources[index % len(sources)]
        offset = int(rng.integers(0, len(source) - WEEK_STEPS))
        window = source[offset : offset + WEEK_STEPS] * rng.uniform(0.2, 5.0)
        series.append(window * rng.lognormal(0.0, 0.05, WEEK_STEPS))
    return series


def default_goal() -> ScalingGoal | None:
    """The goal a refit gets with the default settings, before any cold start is learned."""
    queries = QuerySettings(load="load_rps")
    workload = WorkloadSettings(name="bench", queries=queries, replica_capacity_rps=1.0)
    return scaling_goal(workload.to_policy(), None)


def refit(chunk: list[np.ndarray], model: str) -> int:
    forecaster, goal = MODELS[model](), default_goal()
    for values in chunk:
        history = LoadSeries(0.0, 60.0, values)
        forecaster.fit(history, goal).predict(history, HORIZON_STEPS, (0.5, 0.9, 0.99))
    return len(chunk)


def time_refit(series: list[np.ndarray], model: str, workers: int) -> float:
    chunks = [series[index::workers] for index in range(workers)]
    started = time.perf_counter()
    if workers == 1:
        refit(series, model)
    else:
        with ProcessPoolExecutor(workers) as pool:
            assert sum(pool.map(refit, chunks, [model] * workers)) == len(series)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default="auto", help="comma-separated, timed after last_value")
    args = parser.parse_args()
    series = build_series(args.series)
    print(
        f"{args.series} series x {WEEK_STEPS} steps (60 s), {args.workers} workers, median of {args.repeats}"
    )
    print(f"{'model':<12} {'seconds':>8} {'ratio':>6}")
    baseline = None
    for model in ("last_value", *args.models.split(",")):
        seconds = statistics.median(time_refit(series, model, args.workers) for _ in range(args.repeats))
        baseline = baseline or seconds
        print(f"{model:<12} {seconds:>8.2f} {seconds / baseline:>6.2f}")
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"peak resident memory: main {own:.0f} MB, largest worker {children:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Must-show table: every policy on three real traces, cost relative to the oracle.

Usage: .venv/bin/python bench/replay_table.py [--cold-start-seconds 300] [--policies ...]
    [--forecast-model M] [--forecast-quantile Q] [--forecast-floor-quantile Q]
Rows are traces; for each policy the columns are its violation_ratio and its replica_hours
divided by the oracle's. Skips (exit 0) when ../shared/data is absent.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from forecasting import DEFAULT_MODEL
from sidecar.replay_command import (
    DEFAULT_FLOOR_QUANTILE,
    DEFAULT_FORECAST_QUANTILE,
    POLICIES,
    build_policy,
    default_capacity_rps,
    scaling_policy,
)
from simulator.metrics_pipeline import TraceMetrics
from simulator.replay import ReplaySettings, replay
from simulator.report import scores
from simulator.trace import read_trace

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
TRACES = (
    "nasa-http-1995/series_jul.csv",
    "nasa-http-1995/series_aug.csv",
    "alibaba-servegen-llm/series_m-large_10min.csv",
    "azure-llm-inference-2023/series_conv_1s.csv",
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold-start-seconds", type=int, default=120)
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument("--forecast-model", default=DEFAULT_MODEL)
    parser.add_argument("--forecast-quantile", type=float, default=DEFAULT_FORECAST_QUANTILE)
    parser.add_argument("--forecast-floor-quantile", type=float, default=DEFAULT_FLOOR_QUANTILE)
    parser.add_argument("--traces", help="comma-separated paths under ../shared/data (default: all four)")
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"skipped: {DATA} is absent")
        return 0
    names = args.policies.split(",")
    rows = []
    timings = []
    available: list[str] = []
    for relative in args.traces.split(",") if args.traces else TRACES:
        trace = read_trace(DATA / relative)
        settings = ReplaySettings(
            replica_capacity_rps=default_capacity_rps(trace), cold_start_seconds=args.cold_start_seconds
        )
        scaling = scaling_policy(settings, args.forecast_quantile, args.forecast_floor_quantile)
        policies = [build_policy(name, settings, scaling, args.forecast_model) for name in names]
        demand = trace.demand_per_second()
        began = time.perf_counter()
        run = replay(
            trace.source,
            demand,
            trace.start_seconds,
            TraceMetrics(demand, trace.start_seconds),
            settings,
            policies,
        )
        timings.append((relative, len(demand), time.perf_counter() - began))
        figures = {s.name: s for s in scores(run)}
        available = list(figures)
        oracle = figures["oracle"].replica_hours if "oracle" in figures else None
        cells = []
        for name in available:
            cost = f"{figures[name].replica_hours / oracle:.3f}" if oracle else "-"
            cells += [f"{figures[name].violation_ratio:.4f}", cost]
        rows.append(f"| {relative} | " + " | ".join(cells) + " |")
    print(
        f"cold start {args.cold_start_seconds} s, capacity p99/20, target utilization 0.7, "
        f"predictive: {args.forecast_model} at q{args.forecast_quantile}, "
        f"floor q{args.forecast_floor_quantile}\n"
    )
    header = " | ".join(f"{n} violation | {n} cost/oracle" for n in available)
    print(f"| trace | {header} |")
    print("|---|" + "---:|" * (2 * len(available)))
    print("\n".join(rows))
    print("\n| trace | simulated seconds | wall seconds (all policies) |\n|---|---:|---:|")
    for relative, seconds, wall in timings:
        print(f"| {relative} | {seconds} | {wall:.1f} |")
    print(f"\ntotal wall: {sum(w for _, _, w in timings):.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Cost-matched replay table: the predictive policy (the shipped control loop behind the example
HPA) against HPA swept over its target utilization, on six real traces, same replica capacity.

Usage: .venv/bin/python bench/replay_table.py [--cold-start-seconds 300] [--traces a.csv,b.csv]
    [--hpa-targets ...] [--knative-targets ...] [--predictive-targets ...] [--workers 2]

Per trace: HPA at each target (the frontier), Knative and the predictive policy at theirs (the
predictive one through an HPA with tolerance 0.1, and at the default target once more through
one with tolerance 0), and the oracle. The comparison is predictive's default point (target 0.7)
against HPA's curve: HPA's replica-hours at the same violation (interpolated piecewise linearly
in log violation, simulator/frontier.py) and HPA's violation at the same replica-hours. Each
(trace, policy, target) replay is one job; jobs run in `--workers` processes. A replay is
deterministic (seeded cold starts, inline fits), so one run per point is its figure. Skips
(exit 0) when ../shared/data is absent.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from sidecar.replay_command import build_policy
from sidecar.replay_simulation import LoopOptions
from simulator.frontier import SWEEP_TARGETS, FrontierPoint, compare
from simulator.metrics_pipeline import TraceMetrics
from simulator.replay import ReplaySettings, default_capacity_rps, replay
from simulator.report import scores
from simulator.trace import read_trace

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
TRACES = (
    "nasa-http-1995/series_jul.csv",
    "nasa-http-1995/series_aug.csv",
    "alibaba-servegen-llm/series_m-large_10min.csv",
    "alibaba-servegen-llm/series_m-mid_10min.csv",
    "alibaba-servegen-llm/series_m-small_10min.csv",
    "twitter-stream-2021-08/series.csv",
)
DEFAULT_TARGET = 0.7


def run_point(
    job: tuple[str, str, float | None, float, int],
) -> tuple[str, str, float | None, float, float, float]:
    """One policy at one target on one trace: (trace, policy, target, tolerance, violation, hours, wall)."""
    relative, policy, target, tolerance, cold_start = job
    trace = read_trace(DATA / relative)
    settings = ReplaySettings(replica_capacity_rps=default_capacity_rps(trace), cold_start_seconds=cold_start)
    built = build_policy(policy, settings, LoopOptions(tolerance=tolerance), None, target)
    demand = trace.demand_per_second()
    began = time.perf_counter()
    run = replay(
        trace.source,
        demand,
        trace.start_seconds,
        TraceMetrics(demand, trace.start_seconds),
        settings,
        [built],
    )
    figure = scores(run)[0]
    return (
        relative,
        policy,
        target,
        tolerance,
        figure.violation_ratio,
        figure.replica_hours,
        time.perf_counter() - began,
    )


def targets(text: str) -> tuple[float, ...]:
    return tuple(float(t) for t in text.split(",") if t.strip())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold-start-seconds", type=int, default=120)
    parser.add_argument("--traces", help="comma-separated paths under ../shared/data (default: all six)")
    parser.add_argument("--hpa-targets", type=targets, default=SWEEP_TARGETS)
    parser.add_argument("--knative-targets", type=targets, default=(0.6, DEFAULT_TARGET))
    parser.add_argument("--predictive-targets", type=targets, default=(0.6, 0.65, DEFAULT_TARGET, 0.75))
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"skipped: {DATA} is absent")
        return 0
    traces = args.traces.split(",") if args.traces else list(TRACES)
    cold = args.cold_start_seconds
    jobs = []
    for relative in traces:
        jobs.append((relative, "predictive", DEFAULT_TARGET, 0.0, cold))
        jobs += [(relative, "predictive", t, 0.1, cold) for t in args.predictive_targets]
        jobs += [(relative, "hpa", t, 0.1, cold) for t in args.hpa_targets]
        jobs += [(relative, "knative", t, 0.1, cold) for t in args.knative_targets]
        jobs.append((relative, "oracle", None, 0.1, cold))
    # The slow ones (the control loop, long traces) first, so the pool ends together.
    jobs.sort(key=lambda job: (job[1] != "predictive", job[0]))
    began = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        results = list(pool.map(run_point, jobs))
    wall = time.perf_counter() - began

    print(f"cold start {cold} s median (lognormal, spread 0.2, seed 0), capacity p99/20,")
    print("15 s scrape delay, 60 s rate window\n")
    print("Frontier (violation / replica-hours):\n")
    print("| trace | policy | target | HPA tolerance | violation | replica-hours | wall s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for relative, policy, target, tolerance, violation, hours, seconds in sorted(
        results, key=lambda r: (r[0], r[1], r[2] or 0, r[3])
    ):
        knob = "-" if target is None else f"{target:g}"
        tol = f"{tolerance:g}" if policy == "predictive" else "-"
        print(f"| {relative} | {policy} | {knob} | {tol} | {violation:.5f} | {hours:,.1f} | {seconds:.0f} |")

    print(
        "\nCost-matched, predictive at target 0.7 against HPA swept over",
        ", ".join(f"{t:g}" for t in args.hpa_targets),
    )
    print(
        "\n| trace | HPA@0.7 violation | HPA@0.7 hours | predictive violation | predictive hours "
        "| HPA hours at predictive's violation | HPA needs | HPA violation at predictive's hours "
        "| predictive / HPA violation | predictive (tolerance 0) violation | hours | oracle hours |"
    )
    print("|---|" + "---:|" * 11)
    for relative in traces:
        mine = [r for r in results if r[0] == relative]

        def pick(policy: str, target: float | None, tolerance: float = 0.1, rows: list = mine) -> tuple:
            return next(r for r in rows if r[1] == policy and r[2] == target and r[3] == tolerance)

        hpa = [FrontierPoint("hpa", r[2], r[4], r[5]) for r in mine if r[1] == "hpa"]
        default = pick("predictive", DEFAULT_TARGET)
        c = compare(FrontierPoint("predictive", DEFAULT_TARGET, default[4], default[5]), hpa)
        hpa_default = pick("hpa", DEFAULT_TARGET)
        zero = pick("predictive", DEFAULT_TARGET, 0.0)
        oracle = pick("oracle", None)
        at_v = (
            "outside"
            if c.baseline_hours_at_same_violation is None
            else f"{c.baseline_hours_at_same_violation:,.1f}"
        )
        extra = "outside" if c.baseline_extra_hours is None else f"{c.baseline_extra_hours:+.1%}"
        at_h = (
            "outside"
            if c.baseline_violation_at_same_hours is None
            else f"{c.baseline_violation_at_same_hours:.5f}"
        )
        ratio = "outside" if c.violation_vs_baseline is None else f"{c.violation_vs_baseline:.3f}"
        print(
            f"| {relative} | {hpa_default[4]:.5f} | {hpa_default[5]:,.1f} | {default[4]:.5f} "
            f"| {default[5]:,.1f} | {at_v} | {extra} | {at_h} | {ratio} | {zero[4]:.5f} | {zero[5]:,.1f} "
            f"| {oracle[5]:,.1f} |"
        )
    print(f"\n{len(jobs)} replays, {args.workers} workers, {wall:.0f} s wall")
    return 0


if __name__ == "__main__":
    sys.exit(main())

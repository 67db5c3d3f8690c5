"""Cost-matched replay table: the predictive policy (the shipped control loop behind the example
HPA) against HPA swept over its target utilization, on six real traces, same replica capacity.

Usage: .venv/bin/python bench/replay_table.py [--cold-start-seconds 300] [--traces a.csv,b.csv]
    [--hpa-targets ...] [--knative-targets ...] [--with-fixed] [--models a,b] [--workers 2]

Per trace, first: HPA at each target (the frontier), Knative at its targets, the oracle, and the
predictive policy at target 0.7 with its default objective (the settings' unserved share; it chooses
its quantiles online); with `--with-fixed` also with the quantiles fixed at the old defaults (pre-warm
0.5, floor 0.84: what it ran before it had an objective). Then, once HPA's points are in: the
predictive policy with its objective set to the unserved share HPA at 0.7 reached on that trace. The
comparison is predictive's default point against HPA's curve: HPA's replica-hours at the same
violation (interpolated piecewise linearly in log violation, simulator/frontier.py) and HPA's
violation at the same replica-hours. Each (trace, policy, target, objective, forecast model) replay
is one job; `--models` runs the predictive jobs once per forecast model (default: the settings'
default model) and prints a cost-matched row for each; jobs run in `--workers` processes. A replay
is deterministic (seeded cold starts, inline fits), so one run per point is its figure. Skips (exit
0) when ../shared/data is absent.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from forecasting import DEFAULT_MODEL, MODELS
from sidecar.replay_command import build_policy
from sidecar.replay_simulation import LoopOptions
from sidecar.settings import ForecastSettings, ObjectiveSettings
from simulator.frontier import SWEEP_TARGETS, FrontierPoint, compare
from simulator.replay import ReplaySettings, default_capacity_rps, replay_trace
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


# What a predictive job runs: the default objective, a given unserved share, or the old fixed
# quantiles.
DEFAULT = "default"
FIXED = "fixed (0.5, 0.84)"
OLD_QUANTILES = ForecastSettings(quantile=0.5, floor_quantile=0.84)

# (trace, policy, target, mode, cold start, forecast model)
Job = tuple[str, str, float | None, str, int, str]
# (trace, policy, target, mode, violation, replica-hours, wall seconds, forecast model,
# decisions per forecast model's choice)
Result = tuple[str, str, float | None, str, float, float, float, str, dict[str, int]]


def options(mode: str, model: str) -> LoopOptions:
    if mode == FIXED:
        return LoopOptions(forecast=OLD_QUANTILES.model_copy(update={"model": model}))
    forecast = ForecastSettings(model=model)
    if mode in (DEFAULT, "-"):
        return LoopOptions(forecast=forecast)
    return LoopOptions(forecast=forecast, objective=ObjectiveSettings(unserved_share=float(mode)))


def run_point(job: Job) -> Result:
    """One policy at one target on one trace: (trace, policy, target, mode, violation, hours, wall)."""
    relative, policy, target, mode, cold_start, model = job
    trace = read_trace(DATA / relative)
    settings = ReplaySettings(replica_capacity_rps=default_capacity_rps(trace), cold_start_seconds=cold_start)
    built = build_policy(policy, settings, options(mode, model), None, target)
    began = time.perf_counter()
    run = replay_trace(trace, settings, [built])
    figure = scores(run)[0]
    return (
        relative,
        policy,
        target,
        mode,
        figure.violation_ratio,
        figure.replica_hours,
        time.perf_counter() - began,
        model,
        dict(run.occupancies[0].forecast_models),
    )


def targets(text: str) -> tuple[float, ...]:
    return tuple(float(t) for t in text.split(",") if t.strip())


# The slowest replays of the control loop first (per-minute traces tick as fast as 10-minute
# ones, but ServeGen's large fleets make each tick dearer), so the pool ends together.
SLOWEST_FIRST = ("m-large", "m-mid", "jul", "aug", "twitter", "m-small")


def _run(pool: ProcessPoolExecutor, jobs: list[Job]) -> list[Result]:
    def rank(job: Job) -> int:
        return next((i for i, key in enumerate(SLOWEST_FIRST) if key in job[0]), len(SLOWEST_FIRST))

    return list(pool.map(run_point, sorted(jobs, key=rank)))


def _pick(rows: list[Result], policy: str, target: float | None, mode: str = "-", model: str = "-") -> Result:
    return next(r for r in rows if r[1] == policy and r[2] == target and r[3] == mode and r[7] == model)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold-start-seconds", type=int, default=120)
    parser.add_argument("--traces", help="comma-separated paths under ../shared/data (default: all six)")
    parser.add_argument("--hpa-targets", type=targets, default=SWEEP_TARGETS)
    parser.add_argument("--knative-targets", type=targets, default=())
    parser.add_argument("--with-fixed", action="store_true", help="also the old fixed quantiles (0.5, 0.84)")
    parser.add_argument(
        "--models",
        default=DEFAULT_MODEL,
        help=f"comma-separated forecast models for the predictive jobs (default {DEFAULT_MODEL})",
    )
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"skipped: {DATA} is absent")
        return 0
    traces = args.traces.split(",") if args.traces else list(TRACES)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        parser.error(f"--models: unknown {unknown or 'empty list'}; choose from {', '.join(MODELS)}")
    cold = args.cold_start_seconds
    jobs: list[Job] = []
    for relative in traces:
        jobs += [(relative, "hpa", t, "-", cold, "-") for t in args.hpa_targets]
        jobs += [(relative, "knative", t, "-", cold, "-") for t in args.knative_targets]
        jobs.append((relative, "oracle", None, "-", cold, "-"))
    began = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        results = _run(pool, jobs)
        # Then every predictive run at once: its default objective, and HPA at 0.7's unserved
        # share on that trace as its objective.
        matched = {r[0]: r[4] for r in results if r[1] == "hpa" and r[2] == DEFAULT_TARGET}
        second: list[Job] = []
        for relative in traces:
            for model in models:
                second.append((relative, "predictive", DEFAULT_TARGET, DEFAULT, cold, model))
                if args.with_fixed:
                    second.append((relative, "predictive", DEFAULT_TARGET, FIXED, cold, model))
                if matched.get(relative, 0.0) > 0:
                    share = repr(matched[relative])
                    second.append((relative, "predictive", DEFAULT_TARGET, share, cold, model))
        results += _run(pool, second)
    wall = time.perf_counter() - began

    print(f"cold start {cold} s median (lognormal, spread 0.2, seed 0), capacity p99/20,")
    print("15 s scrape delay, 60 s rate window, predictive through the example HPA (tolerance 0.1)\n")
    print("Frontier (violation / replica-hours):\n")
    print("| trace | policy | forecast model | target | objective | violation | replica-hours | wall s |")
    print("|---|---|---|---:|---|---:|---:|---:|")
    for relative, policy, target, mode, violation, hours, seconds, model, _ in sorted(
        results, key=lambda r: (r[0], r[1], r[7], r[2] or 0, r[3])
    ):
        knob = "-" if target is None else f"{target:g}"
        shown = mode if mode in ("-", DEFAULT, FIXED) else f"{float(mode):.5f} (HPA@0.7's)"
        row = (
            f"| {relative} | {policy} | {model} | {knob} | {shown} | {violation:.5f} | {hours:,.1f} "
            f"| {seconds:.0f} |"
        )
        print(row)

    print(
        "\nCost-matched, predictive at target 0.7 (default objective) against HPA swept over",
        ", ".join(f"{t:g}" for t in args.hpa_targets),
    )
    print(
        "\n| trace | forecast model | HPA@0.7 violation | HPA@0.7 hours | predictive violation "
        "| predictive hours "
        "| HPA hours at predictive's violation | HPA needs | HPA violation at predictive's hours "
        "| predictive / HPA violation | objective = HPA@0.7's: violation | hours | vs HPA@0.7 hours "
        "| oracle hours |"
    )
    print("|---|---|" + "---:|" * 12)
    for relative, model in ((r, m) for r in traces for m in models):
        mine = [r for r in results if r[0] == relative]
        hpa = [FrontierPoint("hpa", r[2], r[4], r[5]) for r in mine if r[1] == "hpa"]
        default = _pick(mine, "predictive", DEFAULT_TARGET, DEFAULT, model)
        c = compare(FrontierPoint("predictive", DEFAULT_TARGET, default[4], default[5]), hpa)
        hpa_default = _pick(mine, "hpa", DEFAULT_TARGET)
        oracle = _pick(mine, "oracle", None)
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
        objective = next(
            (r for r in mine if r[1] == "predictive" and r[7] == model and r[3] not in (DEFAULT, FIXED)), None
        )
        if objective is None:
            met = "- | - | -"
        else:
            met = f"{objective[4]:.5f} | {objective[5]:,.1f} | {objective[5] / hpa_default[5] - 1:+.1%}"
        print(
            f"| {relative} | {model} | {hpa_default[4]:.5f} | {hpa_default[5]:,.1f} | {default[4]:.5f} "
            f"| {default[5]:,.1f} | {at_v} | {extra} | {at_h} | {ratio} | {met} | {oracle[5]:,.1f} |"
        )
    chosen = [r for r in results if len(r[8]) > 1 or any(":" in name for name in r[8])]
    if chosen:
        print("\nWhat the choosing models chose (share of the predictive decisions with a forecast):\n")
        print("| trace | forecast model | objective | choice |")
        print("|---|---|---|---|")
        for r in sorted(chosen, key=lambda r: (r[0], r[7], r[3])):
            total_decisions = sum(r[8].values())
            shares = ", ".join(
                f"{name.split(':')[-1]} {count / total_decisions:.0%}" for name, count in sorted(r[8].items())
            )
            shown = r[3] if r[3] in (DEFAULT, FIXED) else f"{float(r[3]):.5f} (HPA@0.7's)"
            print(f"| {r[0]} | {r[7]} | {shown} | {shares} |")
    total = len(jobs) + len(second)
    print(f"\n{total} replays, {args.workers} workers, {wall:.0f} s wall")
    return 0


if __name__ == "__main__":
    sys.exit(main())

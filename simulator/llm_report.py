"""Scores of an LLM replay and the files that show them: per-policy SLO attainment, TTFT p50/p99,
GPU-hours and scale events (JSON and a markdown table), one CSV of requests per policy from which
every figure can be recomputed (`score_requests`), and a plot of TTFT over time beside replicas.

With a sweep (runs named `policy@knob`), the cost-matched comparison in these units
(simulator/frontier.py: violation = 1 - attainment, hours = GPU-hours): each policy's GPU-hours
at the target attainment (99 %), interpolated on its own curve; where the target lies outside
its sweep, the cheapest swept point meeting it (an upper bound) or, when none does, the best
attainment it reached. The predictive policy is set against the cheapest baseline there.

TTFT = first_token_s - arrival_s; TPOT = (finished_s - first_token_s) / (output_tokens - 1), for
requests of more than one output token (a one-token request meets any TPOT SLO). Percentiles are
numpy's default (linear) over all requests.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from simulator.frontier import AtViolation, FrontierPoint, at_violation, curves, parse_sweep_name
from simulator.request_trace import RequestTrace
from simulator.serving import ServingRun

REQUEST_COLUMNS = (
    "arrival_s", "input_tokens", "output_tokens", "replica", "admitted_s", "first_token_s", "finished_s",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Slo:
    ttft_seconds: float = 2.0
    tpot_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class LlmScore:
    name: str
    attainment: float
    ttft_p50_s: float
    ttft_p99_s: float
    tpot_p99_s: float
    gpu_hours: float
    scale_events: int
    drained_replicas: int
    longest_drain_s: float


def score_requests(
    arrival_s: np.ndarray,
    output_tokens: np.ndarray,
    first_token_s: np.ndarray,
    finished_s: np.ndarray,
    slo: Slo,
) -> dict[str, float]:
    """Attainment and latency percentiles from per-request times (the CSV's columns)."""
    ttft = first_token_s - arrival_s
    decoded = output_tokens > 1
    tpot = np.zeros_like(ttft)
    tpot[decoded] = (finished_s[decoded] - first_token_s[decoded]) / (output_tokens[decoded] - 1)
    met = ttft <= slo.ttft_seconds
    if slo.tpot_seconds is not None:
        met &= tpot <= slo.tpot_seconds
    return {
        "attainment": float(np.mean(met)),
        "ttft_p50_s": float(np.percentile(ttft, 50)),
        "ttft_p99_s": float(np.percentile(ttft, 99)),
        "tpot_p99_s": float(np.percentile(tpot[decoded], 99)) if decoded.any() else 0.0,
    }


def score(trace: RequestTrace, run: ServingRun, slo: Slo) -> LlmScore:
    figures = score_requests(trace.arrival_s, trace.output_tokens, run.first_token_s, run.finished_s, slo)
    return LlmScore(
        name=run.name,
        gpu_hours=run.gpu_hours,
        scale_events=run.scale_events,
        drained_replicas=len(run.drained),
        longest_drain_s=max((seconds for _, seconds in run.drained), default=0.0),
        **figures,
    )


def frontier_points(scores: list[LlmScore]) -> list[FrontierPoint]:
    """The swept runs' points: violation = 1 - attainment, hours = GPU-hours."""
    points = []
    for s in scores:
        parsed = parse_sweep_name(s.name)
        if parsed is not None:
            points.append(FrontierPoint(parsed[0], parsed[1], 1.0 - s.attainment, s.gpu_hours))
    return points


@dataclass(frozen=True, slots=True)
class EqualAttainment:
    """Every swept policy at `target` attainment, and `policy` against the cheapest baseline."""

    target: float
    curves: tuple[AtViolation, ...]
    policy: str
    baselines: tuple[str, ...]

    @staticmethod
    def hours(curve: AtViolation) -> float | None:
        """GPU-hours at the target: interpolated, else the cheapest swept point meeting it."""
        return curve.hours if curve.hours is not None else curve.cheapest_meeting_hours

    def of(self, name: str) -> AtViolation | None:
        return next((c for c in self.curves if c.policy == name), None)

    @property
    def best_baseline(self) -> AtViolation | None:
        priced = [c for c in self.curves if c.policy in self.baselines and self.hours(c) is not None]
        return min(priced, key=lambda c: self.hours(c) or 0.0) if priced else None

    @property
    def saving(self) -> float | None:
        """1 - policy's GPU-hours / the best baseline's at the target: 0.2 is 20 % fewer."""
        mine, best = self.of(self.policy), self.best_baseline
        if mine is None or best is None:
            return None
        ours, theirs = self.hours(mine), self.hours(best)
        return None if ours is None or not theirs else 1.0 - ours / theirs


def equal_attainment(
    scores: list[LlmScore], target: float, policy: str, baselines: tuple[str, ...]
) -> list[EqualAttainment]:
    """The comparison at `target`, and, when the policy or every baseline falls short of it, at
    the highest attainment the policy and a baseline both reach (min of the policy's best and
    the best baseline's best): a target near the idle ceiling is often outside every sweep."""
    by_policy = curves(frontier_points(scores))
    if not by_policy:
        return []
    levels = [target]
    best = {name: 1.0 - min(p.violation_ratio for p in curve) for name, curve in by_policy.items()}
    reached = [best[name] for name in baselines if name in best]
    if policy in best and reached:
        common = min(target, best[policy], max(reached))
        if common < target:
            levels.append(common)
    return [
        EqualAttainment(
            level, tuple(at_violation(c, 1.0 - level) for c in by_policy.values()), policy, baselines
        )
        for level in levels
    ]


def summary(
    trace: RequestTrace,
    runs: list[ServingRun],
    slo: Slo,
    parameters: dict[str, object],
    equal: tuple[float, str, tuple[str, ...]] | None = None,
) -> dict:
    """The JSON document; with `equal` = (target attainment, policy, baselines) and swept runs,
    also `frontier` (the points per policy) and `equal_attainment` (at the target, then at the
    highest attainment both reach when that is lower)."""
    scores = [score(trace, r, slo) for r in runs]
    document = _summary(trace, scores, slo, parameters)
    compared = equal_attainment(scores, *equal) if equal is not None else []
    if compared:
        document["frontier"] = {
            name: [
                {"knob": p.knob, "attainment": 1.0 - p.violation_ratio, "gpu_hours": p.hours} for p in curve
            ]
            for name, curve in curves(frontier_points(scores)).items()
        }
        document["equal_attainment"] = [_equal_json(c) for c in compared]
    return document


def _equal_json(compared: EqualAttainment) -> dict[str, object]:
    best = compared.best_baseline
    return {
        "attainment": compared.target,
        "policies": {
            c.policy: {
                "gpu_hours_at_attainment": c.hours,
                "cheapest_meeting_gpu_hours": c.cheapest_meeting_hours,
                "cheapest_meeting_knob": c.cheapest_meeting_knob,
                "best_attainment": 1.0 - c.least_violation,
                "gpu_hours_at_best_attainment": c.hours_at_least_violation,
            }
            for c in compared.curves
        },
        "policy": compared.policy,
        "best_baseline": None if best is None else best.policy,
        "saving_vs_best_baseline": compared.saving,
    }


def equal_attainment_table(
    trace: RequestTrace, runs: list[ServingRun], slo: Slo, equal: tuple[float, str, tuple[str, ...]]
) -> str:
    scores = [score(trace, r, slo) for r in runs]
    compared = equal_attainment(scores, *equal)
    lines = [
        "| policy | knob | attainment | TTFT p99 s | GPU-hours |",
        "|---|---:|---:|---:|---:|",
    ]
    for s in scores:
        parsed = parse_sweep_name(s.name)
        knob = "-" if parsed is None else f"{parsed[1]:g}"
        name = s.name if parsed is None else parsed[0]
        lines.append(f"| {name} | {knob} | {s.attainment:.4f} | {s.ttft_p99_s:.2f} | {s.gpu_hours:.2f} |")
    for index, level in enumerate(compared):
        what = "the target" if index == 0 else "the highest attainment both reach"
        lines += [
            "",
            f"At equal attainment {level.target:.4f} ({what}; TTFT <= {slo.ttft_seconds:g} s), "
            "each policy over its own knob:",
            "",
            "| policy | GPU-hours there (interpolated) | cheapest swept point meeting it "
            "| best attainment reached |",
            "|---|---:|---:|---:|",
        ]
        for c in level.curves:
            interpolated = "outside the sweep" if c.hours is None else f"{c.hours:.2f}"
            meeting = (
                "none"
                if c.cheapest_meeting_hours is None
                else f"{c.cheapest_meeting_hours:.2f} (knob {c.cheapest_meeting_knob:g})"
            )
            lines.append(
                f"| {c.policy} | {interpolated} | {meeting} "
                f"| {1 - c.least_violation:.4f} at {c.hours_at_least_violation:.2f} GPU-h |"
            )
        best, saving = level.best_baseline, level.saving
        if best is None or saving is None:
            lines.append(f"\n{level.policy} vs the best baseline: not comparable (not both reach it)")
        else:
            lines.append(
                f"\n{level.policy} vs the best baseline there ({best.policy}): {saving:+.1%} GPU-hours saved"
            )
    return "\n".join(lines)


def _summary(trace: RequestTrace, scores: list[LlmScore], slo: Slo, parameters: dict[str, object]) -> dict:
    return {
        "trace": trace.source,
        "requests": len(trace),
        "parameters": {
            **parameters,
            "slo_ttft_seconds": slo.ttft_seconds,
            "slo_tpot_seconds": slo.tpot_seconds,
        },
        "policies": {s.name: {k: v for k, v in asdict(s).items() if k != "name"} for s in scores},
    }


def write_json(document: dict, path: Path) -> None:
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def write_requests(trace: RequestTrace, run: ServingRun, directory: Path) -> Path:
    """DIR/<policy>.csv, times to the microsecond in seconds since the trace start."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{run.name}.csv"
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(REQUEST_COLUMNS)
        writer.writerows(
            zip(
                (f"{a:.6f}" for a in trace.arrival_s.tolist()),
                trace.input_tokens.tolist(),
                trace.output_tokens.tolist(),
                run.replica.tolist(),
                (f"{a:.6f}" for a in run.admitted_s.tolist()),
                (f"{a:.6f}" for a in run.first_token_s.tolist()),
                (f"{a:.6f}" for a in run.finished_s.tolist()),
                strict=True,
            )
        )
    return path


def comparison_table(trace: RequestTrace, runs: list[ServingRun], slo: Slo) -> str:
    lines = [
        f"| policy | attainment (TTFT <= {slo.ttft_seconds:g} s) | TTFT p50 s | TTFT p99 s | GPU-hours "
        "| scale events | drained |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for s in (score(trace, r, slo) for r in runs):
        lines.append(
            f"| {s.name} | {s.attainment:.4f} | {s.ttft_p50_s:.3f} | {s.ttft_p99_s:.2f} | {s.gpu_hours:.2f} "
            f"| {s.scale_events} | {s.drained_replicas} |"
        )
    return "\n".join(lines)


def write_plot(trace: RequestTrace, runs: list[ServingRun], slo: Slo, path: Path, bins: int = 600) -> None:
    """Top: each policy's TTFT p99 per time bin (by arrival), the SLO dashed. Bottom: its ready
    and provisioned replicas at each tick."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (ttft_axes, replica_axes) = plt.subplots(
        2, 1, figsize=(12, 7), sharex=True, constrained_layout=True
    )
    span = max(trace.duration_seconds, 1)
    edges = np.linspace(0, span, bins + 1)
    which = np.clip(np.searchsorted(edges, trace.arrival_s, side="right") - 1, 0, bins - 1)
    for run in runs:
        ttft = run.first_token_s - trace.arrival_s
        order = np.argsort(which, kind="stable")
        groups = np.split(ttft[order], np.searchsorted(which[order], np.arange(1, bins)))
        p99 = np.array([np.percentile(g, 99) if g.size else np.nan for g in groups])
        (line,) = ttft_axes.plot(edges[:-1] / 3600, p99, linewidth=0.9, label=run.name)
        replica_axes.step(
            run.tick_at / 3600, run.tick_ready, where="post", color=line.get_color(), linewidth=0.9
        )
        replica_axes.step(
            run.tick_at / 3600,
            run.tick_provisioned,
            where="post",
            color=line.get_color(),
            linewidth=0.6,
            linestyle=":",
        )
    ttft_axes.axhline(slo.ttft_seconds, color="black", linestyle="--", linewidth=0.8, label="TTFT SLO")
    ttft_axes.set_yscale("log")
    ttft_axes.set_ylabel("TTFT p99 (s) per bin")
    ttft_axes.set_title(f"{Path(trace.source).name}: TTFT and replicas per policy")
    ttft_axes.legend(loc="upper left", fontsize="small", ncol=3)
    replica_axes.set_ylabel("replicas (ready solid, provisioned dotted)")
    replica_axes.set_xlabel("hours since trace start")
    figure.savefig(path, dpi=110)
    plt.close(figure)

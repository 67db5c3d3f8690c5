"""Scores of an LLM replay and the files that show them: per-policy SLO attainment, TTFT p50/p99,
GPU-hours and scale events (JSON and a markdown table), one CSV of requests per policy from which
every figure can be recomputed (`score_requests`), and a plot of TTFT over time beside replicas.

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


def summary(trace: RequestTrace, runs: list[ServingRun], slo: Slo, parameters: dict[str, object]) -> dict:
    return {
        "trace": trace.source,
        "requests": len(trace),
        "parameters": {
            **parameters,
            "slo_ttft_seconds": slo.ttft_seconds,
            "slo_tpot_seconds": slo.tpot_seconds,
        },
        "policies": {
            s.name: {k: v for k, v in asdict(s).items() if k != "name"}
            for s in (score(trace, r, slo) for r in runs)
        },
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

"""Scores of a replay and the files that show them: JSON figures, a timeline CSV that recomputes
them, a plot, and a markdown comparison table.

The timeline is run-length encoded: one row per stretch of seconds in which neither demand nor
any policy's replica counts change, with `duration_s` saying how long it lasts. A 27-day trace at
one row per second would be 2.4 million rows; the stretches carry exactly the same figures:
violation_ratio = sum(duration * max(0, demand - ready * capacity)) / sum(duration * demand), and
replica_hours = sum(duration * provisioned) / 3600.
"""

from __future__ import annotations

import csv
import json
import zlib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from autoscaler.cost import DEFAULT_GPUS_PER_REPLICA, per_1k_requests
from simulator.frontier import Comparison, FrontierPoint, compare, curves, parse_sweep_name
from simulator.replay import Occupancy, ReplayRun

ORACLE = "oracle"
BASELINE = "hpa"


@dataclass(frozen=True, slots=True)
class PolicyScore:
    name: str
    violation_ratio: float
    replica_hours: float
    scale_events: int
    underprovisioned_seconds: int
    # Cost: replica-hours x gpus_per_replica; the share of provisioned capacity that served no
    # request; money per 1,000 requests at price_per_gpu_hour (None without a price).
    gpu_hours: float = 0.0
    idle_share: float = 0.0
    cost_per_1k_requests: float | None = None
    # The share of demand that arrived while no replica was ready: met a cold (scaled-to-zero or
    # not yet started) workload, all of it unserved.
    cold_demand_share: float = 0.0


def score(
    demand_rps: np.ndarray,
    occupancy: Occupancy,
    replica_capacity_rps: float,
    gpus_per_replica: float = DEFAULT_GPUS_PER_REPLICA,
    price_per_gpu_hour: float | None = None,
) -> PolicyScore:
    """Unserved demand over total demand, replica-hours of provisioned (starting + ready) pods,
    changes of the provisioned count, seconds with demand above ready capacity, and the share of
    demand that arrived while no replica was ready.

    Example: demand 10 rps for 2 s, 1 ready replica of 8 rps -> violation (2 + 2) / 20 = 0.2.
    """
    shortfall = np.maximum(0.0, demand_rps - occupancy.ready * replica_capacity_rps)
    total = float(np.sum(demand_rps))
    replica_hours = float(np.sum(occupancy.provisioned)) / 3600.0
    gpu_hours = replica_hours * gpus_per_replica
    capacity = float(np.sum(occupancy.provisioned)) * replica_capacity_rps
    served = total - float(np.sum(shortfall))
    return PolicyScore(
        name=occupancy.name,
        violation_ratio=float(np.sum(shortfall)) / total if total > 0 else 0.0,
        replica_hours=replica_hours,
        scale_events=int(np.count_nonzero(np.diff(occupancy.provisioned))),
        underprovisioned_seconds=int(np.count_nonzero(shortfall > 0)),
        gpu_hours=gpu_hours,
        idle_share=1.0 - min(1.0, served / capacity) if capacity > 0 else 0.0,
        cost_per_1k_requests=per_1k_requests(gpu_hours, served, price_per_gpu_hour),
        cold_demand_share=float(np.sum(demand_rps[occupancy.ready == 0])) / total if total > 0 else 0.0,
    )


def scores(run: ReplayRun) -> list[PolicyScore]:
    settings = run.settings
    return [
        score(
            run.demand_rps,
            o,
            settings.replica_capacity_rps,
            settings.gpus_per_replica,
            settings.price_per_gpu_hour,
        )
        for o in run.occupancies
    ]


def summary(run: ReplayRun) -> dict[str, object]:
    """The JSON document: run parameters and per-policy figures, with cost relative to the oracle
    when the oracle ran."""
    figures = scores(run)
    oracle_hours = next((s.replica_hours for s in figures if s.name == ORACLE), None)
    policies: dict[str, object] = {}
    for figure, occupancy in zip(figures, run.occupancies, strict=True):
        entry: dict[str, object] = {k: v for k, v in asdict(figure).items() if k != "name"}
        if oracle_hours:
            entry["replica_hours_vs_oracle"] = figure.replica_hours / oracle_hours
        if occupancy.forecast_models:
            entry["forecast_models"] = dict(sorted(occupancy.forecast_models.items()))
        policies[figure.name] = entry
    document: dict[str, object] = {
        "trace": run.source,
        "parameters": {
            **asdict(run.settings),
            "target_rps_per_replica": run.settings.target_rps_per_replica,
            "simulated_seconds": len(run.demand_rps),
            "start_seconds": run.start_seconds,
            **run.parameters,
        },
        "policies": policies,
    }
    points = frontier_points(run)
    if points:
        document["frontier"] = {
            name: [
                {
                    "knob": point.knob,
                    "violation_ratio": point.violation_ratio,
                    "replica_hours": point.hours,
                }
                for point in curve
            ]
            for name, curve in curves(points).items()
        }
        document["comparison"] = [
            {
                **{("replica_hours" if k == "hours" else k): v for k, v in asdict(c).items()},
                "baseline_extra_hours": c.baseline_extra_hours,
                "violation_vs_baseline": c.violation_vs_baseline,
            }
            for c in comparisons(run)
        ]
    return document


def frontier_points(run: ReplayRun) -> list[FrontierPoint]:
    """The swept policies' points (occupancies named like hpa@0.55)."""
    points = []
    for figure in scores(run):
        parsed = parse_sweep_name(figure.name)
        if parsed is not None:
            points.append(FrontierPoint(parsed[0], parsed[1], figure.violation_ratio, figure.replica_hours))
    return points


def comparisons(run: ReplayRun) -> list[Comparison]:
    """Each swept policy's default point (`default_knob`) against HPA's curve."""
    by_policy = curves(frontier_points(run))
    baseline = by_policy.get(BASELINE)
    if not baseline:
        return []
    return [
        compare(point, baseline)
        for name, curve in by_policy.items()
        if name != BASELINE
        for point in curve
        if point.knob == default_knob(run, name)
    ]


def default_knob(run: ReplayRun, policy: str) -> float:
    """The knob of a swept policy's default point: what the caller reported under
    `sweep_defaults` (the predictive policy's objective), else the run's target utilization."""
    defaults = run.parameters.get("sweep_defaults")
    if isinstance(defaults, Mapping) and policy in defaults:
        return float(defaults[policy])
    return run.settings.target_utilization


def sweep_table(run: ReplayRun) -> str:
    """The frontier per policy, then the cost-matched comparison against HPA."""
    lines = [
        "Each policy over its own knob: hpa and knative over target utilization, predictive over its"
        " objective (the unserved share it is given).",
        "",
        "| policy | knob | violation_ratio | replica_hours |",
        "|---|---:|---:|---:|",
    ]
    for name, curve in curves(frontier_points(run)).items():
        lines += [f"| {name} | {p.knob:g} | {p.violation_ratio:.5f} | {p.hours:.1f} |" for p in curve]
    for figure in scores(run):
        if parse_sweep_name(figure.name) is None:
            lines.append(f"| {figure.name} | - | {figure.violation_ratio:.5f} | {figure.replica_hours:.1f} |")
    lines += [
        "",
        f"Each policy at its default (ringed in the plot), against {BASELINE} swept over its own knob:",
        "",
        "| policy | violation | replica_hours | hpa hours at same violation | hpa extra hours "
        "| hpa violation at same hours | violation / hpa's |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c in comparisons(run):
        lines.append(
            f"| {c.policy} | {c.violation_ratio:.5f} | {c.hours:.1f} "
            f"| {_or_outside(c.baseline_hours_at_same_violation, '.1f')} "
            f"| {_or_outside(c.baseline_extra_hours, '+.1%')} "
            f"| {_or_outside(c.baseline_violation_at_same_hours, '.5f')} "
            f"| {_or_outside(c.violation_vs_baseline, '.3f')} |"
        )
    return "\n".join(lines)


def _or_outside(value: float | None, spec: str) -> str:
    return "outside the sweep" if value is None else format(value, spec)


def write_json(run: ReplayRun, path: Path) -> None:
    path.write_text(json.dumps(summary(run), indent=2) + "\n", encoding="utf-8")


def timeline_columns(run: ReplayRun) -> list[str]:
    columns = ["t", "duration_s", "demand_rps"]
    for occupancy in run.occupancies:
        columns += [f"{occupancy.name}_ready", f"{occupancy.name}_provisioned"]
    return columns


def write_timeline(run: ReplayRun, path: Path) -> int:
    """Write the run-length timeline (t in seconds since the trace start); return its row count."""
    series = [run.demand_rps]
    for occupancy in run.occupancies:
        series += [occupancy.ready, occupancy.provisioned]
    table = np.column_stack(series)
    starts = np.flatnonzero(np.concatenate(([True], np.any(table[1:] != table[:-1], axis=1))))
    durations = np.diff(np.append(starts, len(table)))
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(timeline_columns(run))
        for start, duration in zip(starts.tolist(), durations.tolist(), strict=True):
            demand = float(run.demand_rps[start])
            counts = [int(table[start, i]) for i in range(1, table.shape[1])]
            writer.writerow([start, duration, repr(demand), *counts])
    return len(starts)


def comparison_table(run: ReplayRun) -> str:
    """A markdown table: one row per policy, cost relative to the oracle."""
    figures = scores(run)
    oracle_hours = next((s.replica_hours for s in figures if s.name == ORACLE), None)
    lines = [
        "| policy | violation_ratio | replica_hours | vs oracle | scale_events | underprovisioned_s "
        "| gpu_hours | idle_share | cost_per_1k |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in figures:
        ratio = f"{s.replica_hours / oracle_hours:.2f}x" if oracle_hours else "-"
        cost = "-" if s.cost_per_1k_requests is None else f"{s.cost_per_1k_requests:.4g}"
        lines.append(
            f"| {s.name} | {s.violation_ratio:.4f} | {s.replica_hours:.1f} | {ratio} "
            f"| {s.scale_events} | {s.underprovisioned_seconds} "
            f"| {s.gpu_hours:.1f} | {s.idle_share:.3f} | {cost} |"
        )
    return "\n".join(lines)


# One colour per policy whatever `--policies` order is given (matplotlib's tab10 by name); a
# swept variant (`hpa@0.6`) takes its policy's colour.
POLICY_COLOURS = {
    "hpa": "tab:blue",
    "knative": "tab:orange",
    "predictive": "tab:green",
    "static-peak": "tab:red",
    "oracle": "tab:purple",
}
_SPARE_COLOURS = ("tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray")


def policy_colour(name: str) -> str:
    base = name.split("@", 1)[0]
    if base in POLICY_COLOURS:
        return POLICY_COLOURS[base]
    return _SPARE_COLOURS[zlib.crc32(base.encode()) % len(_SPARE_COLOURS)]


def write_plot(run: ReplayRun, path: Path, max_points: int = 1500) -> None:
    """Small multiples: one panel per policy with demand (black), its ready capacity and the
    forecast it used, on shared axes so the policies compare at a glance; the bottom panel holds
    every policy's cumulative unserved requests as a share of all demand so far, so the moment a
    policy falls behind is plain to see. Each policy keeps its colour (POLICY_COLOURS) and the
    legends sit outside the data.

    Long traces are drawn in blocks of seconds: demand at its block maximum and capacity at its
    block minimum, so a short shortfall stays visible rather than averaged away.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    capacity = run.settings.replica_capacity_rps
    block = max(1, -(-len(run.demand_rps) // max_points))
    hours = _blocks(np.arange(len(run.demand_rps), dtype=float), block, np.min) / 3600.0
    demand = _blocks(run.demand_rps, block, np.max)
    count = len(run.occupancies)
    figure, axes = plt.subplots(
        count + 1,
        1,
        figsize=(12, 1.9 * count + 2.4),
        sharex=True,
        sharey=False,
        height_ratios=(*([2] * count), 2),
        layout="constrained",
    )
    panels, miss_axes = axes[:-1], axes[-1]
    demand_total = np.maximum(np.cumsum(run.demand_rps), 1e-12)
    top = float(np.nanmax(demand)) if np.isfinite(demand).any() else 1.0
    for axes_, occupancy in zip(panels, run.occupancies, strict=True):
        colour = policy_colour(occupancy.name)
        axes_.step(hours, demand, where="post", color="black", linewidth=0.7, label="demand")
        ready_capacity = _blocks(occupancy.ready * capacity, block, np.min)
        axes_.step(hours, ready_capacity, where="post", color=colour, linewidth=1.0, label="ready capacity")
        at, rps = occupancy.forecast_at, occupancy.forecast_rps
        if at is not None and rps is not None and at.size:
            stride = max(1, len(at) // max_points)
            axes_.plot(
                (at[::stride] - run.start_seconds) / 3600.0,
                rps[::stride],
                linestyle=":",
                linewidth=1.0,
                color="dimgray",
                label="forecast",
            )
        # Static peak's flat capacity would squash every other panel: clip at 1.6x peak demand.
        axes_.set_ylim(0, top * 1.6)
        axes_.set_ylabel("rps", fontsize="small")
        axes_.set_title(occupancy.name, loc="left", fontsize="medium", color=colour, pad=2)
        unserved = np.cumsum(np.maximum(0.0, run.demand_rps - occupancy.ready * capacity))
        share = _blocks(unserved / demand_total, block, np.max) * 100
        miss_axes.plot(hours, share, color=colour, linewidth=1.1, label=occupancy.name)
    handles = {}
    for axes_ in panels:
        for handle, label in zip(*axes_.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    # A policy's own colour marks its capacity line; the legend shows the shape in neutral grey.
    handles["ready capacity"] = matplotlib.lines.Line2D([], [], color="gray", linewidth=1.0)
    figure.legend(handles.values(), handles.keys(), loc="outside right upper", fontsize="small")
    figure.suptitle(
        f"{Path(run.source).name}: cold start {run.settings.cold_start_seconds} s, "
        f"{capacity:.3g} rps per replica"
    )
    miss_axes.set_ylabel("unserved so far (%)", fontsize="small")
    miss_axes.set_xlabel("hours since trace start")
    miss_axes.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small", frameon=False)
    figure.savefig(path, dpi=110)
    plt.close(figure)


POLICY_MARKERS = {"hpa": "o", "knative": "s", "predictive": "D"}


def write_frontier_plot(run: ReplayRun, path: Path) -> None:
    """Violation (log) against replica-hours: one curve per swept policy, each default point
    (`default_knob`) ringed, the oracle and static fleets as single points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from simulator.frontier import VIOLATION_FLOOR

    figure, axes = plt.subplots(figsize=(8, 5.5), constrained_layout=True)
    for name, curve in curves(frontier_points(run)).items():
        default = default_knob(run, name)
        hours = [p.hours for p in curve]
        violation = [max(p.violation_ratio, VIOLATION_FLOOR) for p in curve]
        (line,) = axes.plot(hours, violation, marker=POLICY_MARKERS.get(name, "^"), label=name)
        for point, x, y in zip(curve, hours, violation, strict=True):
            axes.annotate(f"{point.knob:g}", (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
            if point.knob == default:
                axes.plot(x, y, marker="o", markersize=13, fillstyle="none", color=line.get_color())
    for figure_score in scores(run):
        if parse_sweep_name(figure_score.name) is None and figure_score.name != "static-peak":
            axes.plot(
                figure_score.replica_hours,
                max(figure_score.violation_ratio, VIOLATION_FLOOR),
                marker="*",
                markersize=12,
                linestyle="none",
                color="black",
                label=figure_score.name,
            )
    axes.set_yscale("log")
    axes.set_xlabel("replica-hours")
    axes.set_ylabel(f"unserved share of demand (floored at {VIOLATION_FLOOR:g})")
    axes.set_title(
        f"{Path(run.source).name}: cold start {run.settings.cold_start_seconds} s, "
        f"{run.settings.replica_capacity_rps:.3g} rps per replica; ringed: each policy's default"
    )
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="upper right", fontsize="small")
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _blocks(values: np.ndarray, block: int, reduce: Callable[..., np.ndarray]) -> np.ndarray:
    usable = -(-len(values) // block) * block
    padded = np.concatenate((values, np.full(usable - len(values), values[-1])))
    return reduce(padded.reshape(-1, block), axis=1)

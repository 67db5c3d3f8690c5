"""`predictive-autoscaler replay`: replay a request trace through every policy and compare them.

Without `--trace` it replays the bundled trace (sidecar/traces/: the first 4 days of the public
NASA Kennedy Space Center HTTP log of July 1995 at 60 s steps, a small trace with a daily cycle)
and prints the comparison table. Bad input exits 2 with one line: `replay: <file>:<line>: <problem>`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from autoscaler.policy import PolicyError, ScalingPolicy
from forecasting import DEFAULT_MODEL, MODELS
from sidecar import llm_replay_command
from simulator.hpa import HpaAutoscaler
from simulator.knative import KnativeAutoscaler
from simulator.metrics_pipeline import TraceMetrics
from simulator.policies import Oracle, PredictiveAutoscaler, StaticPeak
from simulator.replay import PlannedPolicy, ReplaySettings, replay
from simulator.report import comparison_table, write_json, write_plot, write_timeline
from simulator.request_trace import is_request_trace
from simulator.serving_profile import ProfileError
from simulator.trace import Trace, TraceError, read_trace
from simulator.view import SimulatedAutoscaler

BUNDLED_TRACE = Path(__file__).resolve().parent / "traces" / "nasa-http-1995-jul-4d.csv"
POLICIES = ("hpa", "knative", "predictive", "static-peak", "oracle")
KNOWN_POLICIES = (*POLICIES, "hpa-legacy")
# The default capacity: a replica serves 1/20 of the trace's p99 rate, so the p99 needs
# about 20 / 0.7 = 29 replicas at the default utilization.
CAPACITY_SHARE_OF_P99 = 1 / 20
PROGRESS_MIN_TICKS = 20_000
PLOT_SUFFIXES = (".png", ".svg", ".pdf")
# The policy's own default (slots dataclasses keep no class-level defaults to read it from).
DEFAULT_FORECAST_QUANTILE = ScalingPolicy(replica_capacity_rps=1.0).forecast_quantile
DEFAULT_FLOOR_QUANTILE = ScalingPolicy(replica_capacity_rps=1.0).forecast_floor_quantile


class ReplayError(Exception):
    """A problem with the command line or its outputs; the message is the whole error line."""


def register(subcommands: Any) -> None:
    parser = subcommands.add_parser("replay", help="replay a trace through every policy")
    parser.add_argument("--trace", type=Path, help="timestamp_s,requests or per-request CSV (default: NASA)")
    parser.add_argument(
        "--policies",
        help=f"comma-separated, from {', '.join(KNOWN_POLICIES)} (default: {','.join(POLICIES)})",
    )
    parser.add_argument("--cold-start-seconds", type=int, default=120, help="create -> ready (default 120)")
    parser.add_argument("--replica-capacity", type=float, help="rps one replica serves (default p99 / 20)")
    parser.add_argument("--target-utilization", type=float, default=0.7, help="default 0.7")
    parser.add_argument("--min-replicas", type=int, default=1)
    parser.add_argument("--max-replicas", type=int, default=100_000)
    parser.add_argument("--scrape-delay-seconds", type=float, default=15.0)
    parser.add_argument("--rate-window-seconds", type=float, default=60.0)
    parser.add_argument(
        "--forecast-model",
        default=DEFAULT_MODEL,
        choices=list(MODELS),
        help=f"predictive's forecaster (default {DEFAULT_MODEL})",
    )
    parser.add_argument(
        "--forecast-quantile",
        type=float,
        default=DEFAULT_FORECAST_QUANTILE,
        help=f"predictive provisions for this forecast quantile (default {DEFAULT_FORECAST_QUANTILE})",
    )
    parser.add_argument(
        "--forecast-floor-quantile",
        type=float,
        default=DEFAULT_FLOOR_QUANTILE,
        help=f"predictive scales down no lower than this quantile needs (default {DEFAULT_FLOOR_QUANTILE})",
    )
    parser.add_argument("--json", type=Path, help="write per-policy figures and parameters here")
    parser.add_argument("--timeline", type=Path, help="write the run-length timeline CSV here")
    parser.add_argument("--plot", type=Path, help="write a PNG of demand, capacity and forecast here")
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no table")
    llm_replay_command.add_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        return _replay(args)
    except (TraceError, ReplayError, PolicyError, ProfileError, llm_replay_command.LlmReplayError) as error:
        print(f"replay: {error}", file=sys.stderr)
        return 2


def _replay(args: argparse.Namespace) -> int:
    if args.trace is not None and is_request_trace(args.trace):
        return llm_replay_command.run(args)
    names = [name.strip() for name in (args.policies or ",".join(POLICIES)).split(",") if name.strip()]
    unknown = [name for name in names if name not in KNOWN_POLICIES]
    if unknown or not names:
        raise ReplayError(
            f"--policies: unknown {unknown or 'empty list'}; choose from {', '.join(KNOWN_POLICIES)}"
        )
    if args.cold_start_seconds < 0:
        raise ReplayError(f"--cold-start-seconds={args.cold_start_seconds}: must be >= 0")
    # Written so that NaN, which fails every comparison, is refused too.
    if not 0 <= args.scrape_delay_seconds <= 3600:
        raise ReplayError(f"--scrape-delay-seconds={args.scrape_delay_seconds:g}: allowed 0 to 3600")
    if not 0 < args.rate_window_seconds <= 3600:
        raise ReplayError(
            f"--rate-window-seconds={args.rate_window_seconds:g}: allowed more than 0, up to 3600"
        )
    if args.plot is not None and args.plot.suffix.lower() not in PLOT_SUFFIXES:
        raise ReplayError(f"--plot={args.plot}: the file name must end in one of {', '.join(PLOT_SUFFIXES)}")
    trace = read_trace(args.trace if args.trace is not None else BUNDLED_TRACE)
    settings = ReplaySettings(
        replica_capacity_rps=(
            default_capacity_rps(trace) if args.replica_capacity is None else args.replica_capacity
        ),
        target_utilization=args.target_utilization,
        cold_start_seconds=args.cold_start_seconds,
        min_replicas=args.min_replicas,
        max_replicas=args.max_replicas,
        scrape_delay_seconds=args.scrape_delay_seconds,
        rate_window_seconds=args.rate_window_seconds,
    )
    # validates capacity, utilization, bounds and the quantile
    scaling = scaling_policy(settings, args.forecast_quantile, args.forecast_floor_quantile)
    policies = [build_policy(name, settings, scaling, args.forecast_model) for name in names]
    demand = trace.demand_per_second()
    show_progress = not args.quiet and sys.stderr.isatty()
    result = replay(
        trace.source,
        demand,
        trace.start_seconds,
        TraceMetrics(demand, trace.start_seconds),
        settings,
        policies,
        _progress_bar if show_progress else None,
    )
    outputs = ((args.json, write_json), (args.timeline, write_timeline), (args.plot, write_plot))
    for path, write in outputs:
        if path is None:
            continue
        try:
            write(result, path)
        except OSError as error:
            # Named by the flag's path: a full disk reports no file name of its own.
            raise ReplayError(f"{path}: cannot write: {error.strerror or error}") from error
    if not args.quiet:
        print(
            f"{trace.source}: {len(demand)} s at {trace.step_seconds} s steps, "
            f"capacity {settings.replica_capacity_rps:.3g} rps/replica, "
            f"cold start {settings.cold_start_seconds} s"
        )
        print(comparison_table(result))
    return 0


def default_capacity_rps(trace: Trace) -> float:
    """p99 of the trace's per-step rate divided by 20; 1 rps if the trace has no demand at all."""
    rates = trace.rate_rps()
    known = rates[~np.isnan(rates)]
    p99 = float(np.percentile(known, 99)) if known.size else 0.0
    return p99 * CAPACITY_SHARE_OF_P99 if p99 > 0 else 1.0


def scaling_policy(
    settings: ReplaySettings,
    forecast_quantile: float = DEFAULT_FORECAST_QUANTILE,
    floor_quantile: float = DEFAULT_FLOOR_QUANTILE,
) -> ScalingPolicy:
    return ScalingPolicy(
        replica_capacity_rps=settings.replica_capacity_rps,
        target_utilization=settings.target_utilization,
        min_replicas=settings.min_replicas,
        max_replicas=settings.max_replicas,
        forecast_quantile=forecast_quantile,
        forecast_floor_quantile=floor_quantile,
        default_cold_start_seconds=min(float(settings.cold_start_seconds), 3600.0),
    ).validate()


def build_policy(
    name: str, settings: ReplaySettings, scaling: ScalingPolicy, forecast_model: str = DEFAULT_MODEL
) -> SimulatedAutoscaler | PlannedPolicy:
    target = settings.target_rps_per_replica
    bounds = (settings.min_replicas, settings.max_replicas)
    pipeline = {
        "metrics_delay_seconds": settings.scrape_delay_seconds,
        "metrics_window_seconds": settings.rate_window_seconds,
    }
    if name == "static-peak":
        return StaticPeak()
    if name == "oracle":
        return Oracle()
    if name == "predictive":
        cold_start = float(settings.cold_start_seconds)
        return PredictiveAutoscaler(scaling, MODELS[forecast_model](), cold_start, **pipeline)
    if name in ("hpa", "hpa-legacy"):
        return HpaAutoscaler(target, *bounds, legacy=name == "hpa-legacy", **pipeline)
    return KnativeAutoscaler(target, *bounds)


def _progress_bar(name: str, ticks: int) -> Callable[[int], None] | None:
    if ticks < PROGRESS_MIN_TICKS:
        return None
    bar = tqdm(total=ticks, desc=name, unit="tick", file=sys.stderr, leave=False, mininterval=0.5)

    def advance(count: int) -> None:
        bar.update(count)
        if bar.n >= ticks:
            bar.close()

    return advance

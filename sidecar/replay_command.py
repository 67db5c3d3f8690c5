"""`predictive-autoscaler replay`: replay a request trace through every policy and compare them.

Without `--trace` it replays the bundled trace (sidecar/traces/: the first 4 days of the public
NASA Kennedy Space Center HTTP log of July 1995 at 60 s steps, a small trace with a daily cycle)
and prints the comparison table. Bad input exits 2 with one line: `replay: <file>:<line>: <problem>`.

The predictive policy is the shipped control loop over the simulated cluster, its decision
reaching the pods through the HPA that deploy/examples/hpa configures, or with `--consumer keda`
through the ScaledObject of deploy/examples/keda, which takes it to zero and back when
`--min-replicas 0` (sidecar/replay_simulation). The `keda` policy is KEDA as users configure it
reactively: a Prometheus trigger on the request rate, no forecast (simulator/keda.py).
`--sweep` runs each policy over its own knob at the same replica capacity, HPA and Knative over
target utilization and the predictive policy over its objective (the unserved share it is given;
its target utilization moves replica-hours, not misses, once the objective chooses the
quantiles), and compares them at equal violation and equal replica-hours (simulator/frontier.py).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from pydantic import ValidationError
from tqdm import tqdm

from autoscaler.cost import DEFAULT_GPUS_PER_REPLICA
from autoscaler.policy import PolicyError, ScalingPolicy
from forecasting import DEFAULT_MODEL, MODELS
from sidecar import llm_replay_command
from sidecar.cli import BUNDLED_TRACE
from sidecar.core import Core, load_core
from sidecar.replay_simulation import ControlLoopPolicy, LoopOptions
from sidecar.settings import ForecastSettings, ObjectiveSettings
from simulator.consumer import DEFAULT_TOLERANCE, describe_chain
from simulator.frontier import SWEEP_TARGETS, sweep_name
from simulator.hpa import HpaAutoscaler
from simulator.keda import KedaAutoscaler
from simulator.knative import KnativeAutoscaler
from simulator.policies import Oracle, StaticPeak
from simulator.replay import (
    ClosedLoopPolicy,
    PlannedPolicy,
    ReplaySettings,
    default_capacity_rps,
    replay_trace,
)
from simulator.report import (
    comparison_table,
    sweep_table,
    write_frontier_plot,
    write_json,
    write_plot,
    write_timeline,
)
from simulator.request_trace import is_request_trace
from simulator.serving_profile import ProfileError
from simulator.trace import TraceError, read_trace
from simulator.view import SimulatedAutoscaler

POLICIES = ("hpa", "knative", "predictive", "static-peak", "oracle")
KNOWN_POLICIES = (*POLICIES, "hpa-legacy", "keda")
CONSUMERS = ("hpa", "keda")
SWEPT_POLICIES = ("hpa", "knative", "predictive")
# The predictive policy's knob in a sweep: the objective, around the default 0.001, spanning
# the unserved shares HPA reaches at target utilization 0.5-0.75 on the replay traces.
OBJECTIVE_SWEEP = (0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03)
PROGRESS_MIN_TICKS = 20_000
PLOT_SUFFIXES = (".png", ".svg", ".pdf")
# The settings' own default, what `serve` runs.
DEFAULT_OBJECTIVE = ObjectiveSettings().unserved_share
DEFAULT_SPREAD = ReplaySettings(replica_capacity_rps=1.0).cold_start_spread


class ReplayError(Exception):
    """A problem with the command line or its outputs; the message is the whole error line."""


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trace", type=Path, help="timestamp_s,requests or per-request CSV (default: NASA)")
    parser.add_argument(
        "--policies",
        help=f"comma-separated, from {', '.join(KNOWN_POLICIES)} (default: {','.join(POLICIES)})",
    )
    parser.add_argument(
        "--cold-start-seconds", type=int, default=120, help="median create -> Ready of a pod (default 120)"
    )
    parser.add_argument(
        "--cold-start-spread",
        type=float,
        default=DEFAULT_SPREAD,
        help=f"log standard deviation of the per-pod cold start (default {DEFAULT_SPREAD:g}; 0: fixed)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the cold-start draws (default 0)")
    parser.add_argument("--replica-capacity", type=float, help="rps one replica serves (default p99 / 20)")
    parser.add_argument("--target-utilization", type=float, default=0.7, help="default 0.7")
    parser.add_argument("--min-replicas", type=int, default=1)
    parser.add_argument("--max-replicas", type=int, default=100_000)
    parser.add_argument("--scrape-delay-seconds", type=float, default=15.0)
    parser.add_argument("--rate-window-seconds", type=float, default=60.0)
    parser.add_argument(
        "--gpus-per-replica", type=float, default=DEFAULT_GPUS_PER_REPLICA, help="for the GPU-hours column"
    )
    parser.add_argument(
        "--price-per-gpu-hour", type=float, help="for the cost per 1,000 requests column (default: none)"
    )
    parser.add_argument(
        "--forecast-model",
        default=DEFAULT_MODEL,
        choices=list(MODELS),
        help=f"predictive's forecaster (default {DEFAULT_MODEL})",
    )
    parser.add_argument(
        "--objective-unserved",
        type=float,
        default=DEFAULT_OBJECTIVE,
        help="share of demand predictive may leave unserved; it chooses its quantiles to meet it "
        f"(default {DEFAULT_OBJECTIVE:g})",
    )
    parser.add_argument(
        "--forecast-quantile",
        type=float,
        help="expert override: predictive pre-warms for this forecast quantile (default: chosen)",
    )
    parser.add_argument(
        "--forecast-floor-quantile",
        type=float,
        help="expert override: predictive scales down no lower than this quantile needs (default: chosen)",
    )
    parser.add_argument(
        "--hpa-tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        help="tolerance of the HPA between predictive and its pods (0.1 default; 0: Kubernetes 1.33+)",
    )
    parser.add_argument(
        "--consumer",
        choices=CONSUMERS,
        default="hpa",
        help="what reads predictive's decisions: the HPA of deploy/examples/hpa (default) or the KEDA "
        "ScaledObject of deploy/examples/keda, which scales to zero with --min-replicas 0",
    )
    parser.add_argument(
        "--sweep",
        action="store_true",
        help=f"run hpa and knative at target utilization {', '.join(map(str, SWEEP_TARGETS))} and "
        f"predictive at objective {', '.join(map(str, OBJECTIVE_SWEEP))}; compare at equal violation "
        "and equal replica-hours",
    )
    parser.add_argument("--json", type=Path, help="write per-policy figures and parameters here")
    parser.add_argument("--timeline", type=Path, help="write the run-length timeline CSV here")
    parser.add_argument(
        "--plot",
        type=Path,
        help="write a picture of demand, capacity and forecast (with --sweep: violation vs replica-hours)",
    )
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
    options = loop_options(args)
    if args.trace is not None and is_request_trace(args.trace):
        return llm_replay_command.run(args, options)
    names = [name.strip() for name in (args.policies or ",".join(POLICIES)).split(",") if name.strip()]
    unknown = [name for name in names if name not in KNOWN_POLICIES]
    if unknown or not names:
        raise ReplayError(
            f"--policies: unknown {unknown or 'empty list'}; choose from {', '.join(KNOWN_POLICIES)}"
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
        cold_start_spread=args.cold_start_spread,
        seed=args.seed,
        min_replicas=args.min_replicas,
        max_replicas=args.max_replicas,
        scrape_delay_seconds=args.scrape_delay_seconds,
        rate_window_seconds=args.rate_window_seconds,
        gpus_per_replica=args.gpus_per_replica,
        price_per_gpu_hour=args.price_per_gpu_hour,
    )
    scaling_policy(settings)  # validates capacity, utilization and bounds, naming the field
    core = load_core() if "predictive" in names else None
    if args.sweep:
        policies = sweep_policies(names, settings, options, core)
    else:
        policies = [build_policy(name, settings, options, core) for name in names]
    show_progress = not args.quiet and sys.stderr.isatty()
    result = replay_trace(
        trace,
        settings,
        policies,
        _progress_bar if show_progress else None,
        parameters={
            "predictive_chain": describe_chain(args.hpa_tolerance, options.consumer, settings.min_replicas),
            "predictive_objective_unserved_share": options.objective.unserved_share,
            "predictive_quantiles": describe_quantiles(options.forecast),
            "cold_start_distribution": settings.cold_starts.describe(),
            **({"sweep_defaults": sweep_defaults(settings, options)} if args.sweep else {}),
        },
    )
    plot = write_frontier_plot if args.sweep else write_plot
    outputs = ((args.json, write_json), (args.timeline, write_timeline), (args.plot, plot))
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
            f"{trace.source}: {len(result.demand_rps)} s at {trace.step_seconds} s steps, "
            f"capacity {settings.replica_capacity_rps:.3g} rps/replica, "
            f"cold start {settings.cold_start_seconds} s median (spread {settings.cold_start_spread:g})"
        )
        print(sweep_table(result) if args.sweep else comparison_table(result))
    return 0


def loop_options(args: argparse.Namespace) -> LoopOptions:
    """The flags both replays share, validated, and the predictive policy's loop options."""
    if args.cold_start_seconds < 0:
        raise ReplayError(f"--cold-start-seconds={args.cold_start_seconds}: must be >= 0")
    # Written so that NaN, which fails every comparison, is refused too.
    if not 0 <= args.cold_start_spread <= 2:
        raise ReplayError(f"--cold-start-spread={args.cold_start_spread:g}: allowed 0 to 2")
    if not 0 <= args.hpa_tolerance < 1:
        raise ReplayError(f"--hpa-tolerance={args.hpa_tolerance:g}: allowed 0 up to (not including) 1")
    if not 0 <= args.scrape_delay_seconds <= 3600:
        raise ReplayError(f"--scrape-delay-seconds={args.scrape_delay_seconds:g}: allowed 0 to 3600")
    if not 0 < args.rate_window_seconds <= 3600:
        raise ReplayError(
            f"--rate-window-seconds={args.rate_window_seconds:g}: allowed more than 0, up to 3600"
        )
    # Written so that NaN, which fails every comparison, is refused too.
    if not 0 <= args.gpus_per_replica <= 64:
        raise ReplayError(f"--gpus-per-replica={args.gpus_per_replica:g}: allowed 0 to 64")
    if args.price_per_gpu_hour is not None and not 0 <= args.price_per_gpu_hour < math.inf:
        raise ReplayError(f"--price-per-gpu-hour={args.price_per_gpu_hour:g}: must be a finite number >= 0")
    try:
        forecast = ForecastSettings(
            model=args.forecast_model,
            quantile=args.forecast_quantile,
            floor_quantile=args.forecast_floor_quantile,
        )
    except ValidationError as error:
        problem = error.errors()[0]
        raise ReplayError(f"--forecast-{problem['loc'][0]}: {problem['msg']}".replace("_", "-")) from error
    try:
        objective = ObjectiveSettings(unserved_share=args.objective_unserved)
    except ValidationError as error:
        raise ReplayError(f"--objective-unserved: {error.errors()[0]['msg']}") from error
    return LoopOptions(
        forecast=forecast, objective=objective, tolerance=args.hpa_tolerance, consumer=args.consumer
    )


def describe_quantiles(forecast: ForecastSettings) -> str:
    def one(value: float | None) -> str:
        return "chosen by the objective" if value is None else f"fixed at {value:g}"

    return f"pre-warm {one(forecast.quantile)}, floor {one(forecast.floor_quantile)}"


def scaling_policy(settings: ReplaySettings) -> ScalingPolicy:
    return ScalingPolicy(
        replica_capacity_rps=settings.replica_capacity_rps,
        target_utilization=settings.target_utilization,
        min_replicas=settings.min_replicas,
        max_replicas=settings.max_replicas,
    ).validate()


AnyPolicy = SimulatedAutoscaler | PlannedPolicy | ClosedLoopPolicy


def build_policy(
    name: str,
    settings: ReplaySettings,
    options: LoopOptions | None = None,
    core: Core | None = None,
    target_utilization: float | None = None,
) -> AnyPolicy:
    """One policy at the run's target utilization, or at `target_utilization` (a sweep point,
    named hpa@0.55); the replica capacity is the run's either way."""
    target = settings.target_utilization if target_utilization is None else target_utilization
    label = name if target_utilization is None else sweep_name(name, target)
    per_replica = settings.replica_capacity_rps * target
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
        return ControlLoopPolicy(
            core or load_core(), options or LoopOptions(), target_utilization=target, name=label
        )
    if name in ("hpa", "hpa-legacy"):
        policy = HpaAutoscaler(per_replica, *bounds, legacy=name == "hpa-legacy", **pipeline)
    elif name == "keda":
        policy = KedaAutoscaler(per_replica, *bounds, **pipeline)
    else:
        policy = KnativeAutoscaler(per_replica, *bounds)
    policy.name = label
    return policy


def sweep_policies(
    names: list[str], settings: ReplaySettings, options: LoopOptions, core: Core | None
) -> list[AnyPolicy]:
    """Each swept policy over its own knob (named hpa@0.55, predictive@0.001), the rest once."""
    policies: list[AnyPolicy] = []
    for name in names:
        if name == "predictive":
            core = core or load_core()  # once: every swept point runs the same core
            policies += [
                ControlLoopPolicy(
                    core,
                    replace(options, objective=_with_share(options.objective, share)),
                    name=sweep_name(name, share),
                )
                # The run's own objective is its default point, swept or not.
                for share in sorted({*OBJECTIVE_SWEEP, options.objective.unserved_share})
            ]
        elif name in SWEPT_POLICIES:
            policies += [build_policy(name, settings, options, core, target) for target in SWEEP_TARGETS]
        else:
            policies.append(build_policy(name, settings, options, core))
    return policies


def _with_share(objective: ObjectiveSettings, share: float) -> ObjectiveSettings:
    return ObjectiveSettings(**(objective.model_dump() | {"unserved_share": share}))


def sweep_defaults(settings: ReplaySettings, options: LoopOptions) -> dict[str, float]:
    """Each swept policy's knob at the run's own settings: the point the comparison takes."""
    return {
        name: options.objective.unserved_share if name == "predictive" else settings.target_utilization
        for name in SWEPT_POLICIES
    }


def _progress_bar(name: str, ticks: int) -> Callable[[int], None] | None:
    if ticks < PROGRESS_MIN_TICKS:
        return None
    bar = tqdm(total=ticks, desc=name, unit="tick", file=sys.stderr, leave=False, mininterval=0.5)

    def advance(count: int) -> None:
        bar.update(count)
        if bar.n >= ticks:
            bar.close()

    return advance

"""`replay --trace` of a per-request trace (Azure LLM, Mooncake or `arrival_s,input_tokens,
output_tokens`): the LLM serving replay (simulator/serving.py) under the LLM policies, scored on
TTFT/TPOT SLO attainment and GPU-hours. replay_command dispatches here on the file's header.

The predictive policy is the shipped control loop over the serving cluster, through the example
HPA (sidecar/replay_simulation.ServingControlLoopPolicy), forecasting `--llm-load` (token or
request rate) with vLLM's queue as its reactive signal. `--sweep` runs every swept policy over
its own knob and compares them at equal attainment (simulator/llm_report.py).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sidecar.core import Core, load_core
from sidecar.replay_simulation import LoopOptions, ServingControlLoopPolicy
from simulator.consumer import describe_chain
from simulator.llm_replay import (
    BASELINES,
    DEFAULT_LOAD,
    KNOBS,
    LLM_POLICIES,
    LOADS,
    LlmReplaySettings,
    PredictiveFactory,
    default_sweep,
    hpa_target_rps,
    load_capacity,
    run_policies,
    target_attainment,
)
from simulator.llm_report import (
    Slo,
    comparison_table,
    equal_attainment_table,
    summary,
    write_json,
    write_plot,
    write_requests,
)
from simulator.request_trace import read_request_trace
from simulator.serving_profile import load_profile


class LlmReplayError(Exception):
    """A command-line problem; the message is the whole error line."""


def add_arguments(parser: Any) -> None:
    group = parser.add_argument_group("per-request (LLM) traces")
    group.add_argument("--slo-ttft-seconds", type=float, default=2.0, help="TTFT SLO (default 2 s)")
    group.add_argument(
        "--slo-tpot-seconds", type=float, help="also require TPOT <= this (default: no TPOT SLO)"
    )
    group.add_argument("--requests", type=Path, help="write DIR/<policy>.csv, one row per request")
    group.add_argument(
        "--serving-profile", type=Path, help="serving profile YAML (default: Llama-3.1-8B on one H100)"
    )
    group.add_argument(
        "--llm-load",
        choices=list(LOADS),
        default=DEFAULT_LOAD,
        help=f"the load predictive forecasts and scales on (default {DEFAULT_LOAD})",
    )


def predictive_factory(args: argparse.Namespace, core: Core, options: LoopOptions) -> PredictiveFactory:
    def build(knob: float, name: str) -> ServingControlLoopPolicy:
        slo = Slo(args.slo_ttft_seconds, args.slo_tpot_seconds)
        return ServingControlLoopPolicy(core, knob, args.llm_load, options, slo=slo, name=name)

    return build


def run(args: argparse.Namespace, options: LoopOptions) -> int:
    names = [n.strip() for n in (args.policies or ",".join(LLM_POLICIES)).split(",") if n.strip()]
    unknown = [n for n in names if n not in LLM_POLICIES]
    if unknown or not names:
        raise LlmReplayError(
            f"--policies: {unknown or 'empty list'} not available for a per-request trace; "
            f"choose from {', '.join(LLM_POLICIES)}"
        )
    if not (args.slo_ttft_seconds > 0 and math.isfinite(args.slo_ttft_seconds)):
        raise LlmReplayError(f"--slo-ttft-seconds={args.slo_ttft_seconds:g}: must be a finite number > 0")
    tpot = args.slo_tpot_seconds
    if tpot is not None and not (tpot > 0 and math.isfinite(tpot)):
        raise LlmReplayError(f"--slo-tpot-seconds={tpot:g}: must be a finite number > 0")
    if not 0 < args.target_utilization <= 1:
        raise LlmReplayError(
            f"--target-utilization={args.target_utilization:g}: allowed more than 0, up to 1"
        )
    if not 1 <= args.min_replicas <= args.max_replicas:
        raise LlmReplayError(
            f"--min-replicas={args.min_replicas}, --max-replicas={args.max_replicas}: need 1 <= min <= max"
        )
    capacity = args.replica_capacity
    if capacity is not None and not (capacity > 0 and math.isfinite(capacity)):
        raise LlmReplayError(f"--replica-capacity={capacity:g}: must be a finite number > 0")
    profile = load_profile(args.serving_profile)
    trace = read_request_trace(args.trace)
    settings = LlmReplaySettings(
        cold_start_seconds=float(args.cold_start_seconds),
        cold_start_spread=args.cold_start_spread,
        seed=args.seed,
        min_replicas=args.min_replicas,
        max_replicas=args.max_replicas,
        scrape_delay_seconds=args.scrape_delay_seconds,
        rate_window_seconds=args.rate_window_seconds,
        target_utilization=args.target_utilization,
        target_rps_per_replica=None if capacity is None else capacity * args.target_utilization,
    )
    slo = Slo(args.slo_ttft_seconds, tpot)
    predictive = predictive_factory(args, load_core(), options) if "predictive" in names else None
    sweep = default_sweep() if args.sweep else None
    runs = run_policies(trace, profile, names, settings, slo, predictive, sweep)
    parameters = {
        "profile": profile.name,
        "cold_start_seconds": settings.cold_start_seconds,
        "cold_start_distribution": settings.cold_starts.describe(),
        "predictive_chain": describe_chain(options.tolerance, options.consumer, settings.min_replicas),
        "predictive_load": args.llm_load,
        "predictive_capacity_per_replica": load_capacity(trace, profile, args.llm_load),
        "min_replicas": settings.min_replicas,
        "max_replicas": settings.max_replicas,
        "scrape_delay_seconds": settings.scrape_delay_seconds,
        "rate_window_seconds": settings.rate_window_seconds,
        "hpa_target_rps_per_replica": hpa_target_rps(trace, profile, settings, settings.target_utilization),
        "knobs": {name: asdict(knob) for name, knob in KNOBS.items()},
    }
    equal = (target_attainment(trace, profile, slo), "predictive", BASELINES) if args.sweep else None
    try:
        if args.json is not None:
            target = args.json
            write_json(summary(trace, runs, slo, parameters, equal), args.json)
        if args.requests is not None:
            target = args.requests
            for one in runs:
                write_requests(trace, one, args.requests)
        if args.plot is not None:
            target = args.plot
            write_plot(trace, runs, slo, args.plot)
    except OSError as error:
        raise LlmReplayError(f"{target}: cannot write: {error.strerror or error}") from error
    if not args.quiet:
        print(
            f"{trace.source}: {len(trace)} requests over {trace.duration_seconds} s, {profile.name}, "
            f"cold start {settings.cold_start_seconds:g} s"
        )
        print(
            comparison_table(trace, runs, slo)
            if equal is None
            else equal_attainment_table(trace, runs, slo, equal)
        )
    return 0

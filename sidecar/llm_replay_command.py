"""`replay --trace` of a per-request trace (Azure LLM, Mooncake or `arrival_s,input_tokens,
output_tokens`): the LLM serving replay (simulator/serving.py) under the LLM policies, scored on
TTFT/TPOT SLO attainment and GPU-hours. replay_command dispatches here on the file's header.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from simulator.llm_replay import LLM_POLICIES, LlmReplaySettings, run_policies
from simulator.llm_report import Slo, comparison_table, summary, write_json, write_plot, write_requests
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


def run(args: argparse.Namespace) -> int:
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
        min_replicas=args.min_replicas,
        max_replicas=args.max_replicas,
        scrape_delay_seconds=args.scrape_delay_seconds,
        rate_window_seconds=args.rate_window_seconds,
        target_utilization=args.target_utilization,
        target_rps_per_replica=None if capacity is None else capacity * args.target_utilization,
    )
    slo = Slo(args.slo_ttft_seconds, tpot)
    runs = run_policies(trace, profile, names, settings, slo)
    parameters = {
        "profile": profile.name,
        "cold_start_seconds": settings.cold_start_seconds,
        "min_replicas": settings.min_replicas,
        "max_replicas": settings.max_replicas,
        "scrape_delay_seconds": settings.scrape_delay_seconds,
        "rate_window_seconds": settings.rate_window_seconds,
        "hpa_target_rps_per_replica": settings.target_rps_per_replica
        or settings.target_utilization * profile.capacity_rps(trace.input_tokens, trace.output_tokens),
    }
    try:
        if args.json is not None:
            target = args.json
            write_json(summary(trace, runs, slo, parameters), args.json)
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
        print(comparison_table(trace, runs, slo))
    return 0

"""One per-request trace served under each LLM policy with the same profile, bounds and pipeline.

`run_policies` builds the policies by name and runs each through simulator/serving.serve; the
oracle is searched (simulator/llm_policies.best_oracle) for the cheapest schedule meeting the
SLO target (99 %), capped one point below what an idle replica attains (a prompt whose prefill
alone exceeds the TTFT SLO misses it under any fleet).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from simulator.hpa import HpaAutoscaler
from simulator.llm_policies import (
    KedaQueueAutoscaler,
    KvCacheAutoscaler,
    OracleSchedule,
    best_oracle,
    initial_replicas,
)
from simulator.llm_report import Slo, score_requests
from simulator.llm_signals import LlmSignals
from simulator.metrics_pipeline import TraceMetrics
from simulator.request_trace import RequestTrace
from simulator.serving import LlmAutoscaler, ServingRun, ServingSettings, serve
from simulator.serving_profile import ServingProfile

LLM_POLICIES = ("hpa", "keda", "kv-cache", "oracle")
ORACLE_TARGET_ATTAINMENT = 0.99
# Requests queue behind a long prefill even on a generous fleet, so the idle ceiling itself is out
# of reach; the oracle aims one point below it.
IDLE_MARGIN = 0.01


@dataclass(frozen=True, slots=True)
class LlmReplaySettings:
    cold_start_seconds: float = 120.0
    min_replicas: int = 1
    max_replicas: int = 1000
    scrape_delay_seconds: float = 15.0
    rate_window_seconds: float = 60.0
    target_utilization: float = 0.7
    # HPA's per-pod request-rate target; None: target_utilization x the profile's capacity for
    # the trace's mean token mix.
    target_rps_per_replica: float | None = None
    # Bisection steps of the oracle's search (each a whole serving run).
    oracle_iterations: int = 6


def idle_attainment(trace: RequestTrace, profile: ServingProfile, slo: Slo) -> float:
    """The share of requests an otherwise idle replica serves within the TTFT SLO."""
    first = trace.input_tokens / profile.prefill_tokens_per_second + profile.decode_base_seconds
    return float(np.mean(first <= slo.ttft_seconds))


def run_policies(
    trace: RequestTrace,
    profile: ServingProfile,
    names: Sequence[str],
    settings: LlmReplaySettings,
    slo: Slo,
    cold_start: Callable[[], float] | None = None,
) -> list[ServingRun]:
    """`cold_start` draws one pod's cold start in seconds; default: settings.cold_start_seconds."""
    draw = cold_start if cold_start is not None else (lambda: settings.cold_start_seconds)
    bounds = (settings.min_replicas, settings.max_replicas)
    start = initial_replicas(trace, profile, settings.target_utilization, bounds)
    serving = ServingSettings(settings.min_replicas, settings.max_replicas, initial_replicas=start)
    rate_metrics = TraceMetrics(trace.arrivals_per_second(), trace.start_seconds)
    target_rps = settings.target_rps_per_replica or settings.target_utilization * profile.capacity_rps(
        trace.input_tokens, trace.output_tokens
    )

    def run(policy: LlmAutoscaler) -> ServingRun:
        return serve(policy, trace, profile, serving, draw, rate_metrics, LlmSignals())

    runs = []
    for name in names:
        if name == "oracle":
            results: dict[int, ServingRun] = {}

            def attainment(schedule: OracleSchedule, results: dict[int, ServingRun] = results) -> float:
                results[id(schedule)] = outcome = run(schedule)
                times = (outcome.first_token_s, outcome.finished_s)
                return score_requests(trace.arrival_s, trace.output_tokens, *times, slo)["attainment"]

            target = min(ORACLE_TARGET_ATTAINMENT, idle_attainment(trace, profile, slo) - IDLE_MARGIN)
            schedule, _ = best_oracle(
                lambda u: OracleSchedule(trace, profile, u, settings.cold_start_seconds, bounds),
                attainment,
                target,
                settings.oracle_iterations,
            )
            runs.append(results[id(schedule)])
            continue
        policy: LlmAutoscaler
        delay = settings.scrape_delay_seconds
        if name == "hpa":
            policy = HpaAutoscaler(  # type: ignore[assignment]
                target_rps,
                *bounds,
                metrics_delay_seconds=delay,
                metrics_window_seconds=settings.rate_window_seconds,
            )
        elif name == "keda":
            policy = KedaQueueAutoscaler(*bounds, delay)
        elif name == "kv-cache":
            policy = KvCacheAutoscaler(*bounds, delay)
        else:
            raise ValueError(f"unknown LLM policy {name!r}; known: {', '.join(LLM_POLICIES)}")
        runs.append(run(policy))
    return runs

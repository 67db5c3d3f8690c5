"""One per-request trace served under each LLM policy with the same profile, bounds, cold starts
and pipeline.

`run_policies` builds the policies by name and runs each over its own serving cluster
(simulator/serving.ServingCluster): a ticked baseline through `serve`, the predictive policy
(the shipped control loop, handed in by the shell as a `ClosedLoopServingPolicy`) by driving the
cluster itself, and the oracle searched (simulator/llm_policies.best_oracle) for the cheapest
schedule meeting the SLO target (99 %), capped one point below what an idle replica attains (a
prompt whose prefill alone exceeds the TTFT SLO misses it under any fleet).

With `sweep`, every swept policy runs at each point of its own knob (`KNOBS`: HPA's target
utilization, KEDA's queue threshold, the KV-cache target, the predictive policy's target
utilization), named `hpa@0.5`; simulator/llm_report.py compares them at equal attainment.

Every policy's pods draw their cold starts from the same `ColdStartDistribution` (median, spread,
seed) in creation order, so the n-th pod of any policy takes as long to become Ready.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from simulator.frontier import sweep_name
from simulator.hpa import HpaAutoscaler
from simulator.llm_policies import (
    KEDA_QUEUE_THRESHOLD,
    KV_CACHE_TARGET,
    KedaQueueAutoscaler,
    KvCacheAutoscaler,
    OracleSchedule,
    best_oracle,
    initial_replicas,
)
from simulator.llm_report import Slo, score_requests
from simulator.llm_signals import LlmSignals
from simulator.metrics_pipeline import TraceMetrics
from simulator.pods import ColdStartDistribution
from simulator.request_trace import RequestTrace
from simulator.serving import LlmAutoscaler, ServingCluster, ServingRun, ServingSettings, serve
from simulator.serving_profile import ServingProfile

LLM_POLICIES = ("hpa", "keda", "kv-cache", "predictive", "oracle")
BASELINES = ("hpa", "keda", "kv-cache")
ORACLE_TARGET_ATTAINMENT = 0.99
# Requests queue behind a long prefill even on a generous fleet, so the idle ceiling itself is out
# of reach; the oracle aims one point below it.
IDLE_MARGIN = 0.01
# The load the predictive policy forecasts, as the vLLM counters whose rates sum to it: the
# request arrivals, or the prompt and generated tokens the engines process.
LOADS = {"requests": ("requests_total",), "tokens": ("prompt_tokens_total", "generation_tokens_total")}
DEFAULT_LOAD = "tokens"


@dataclass(frozen=True, slots=True)
class Knob:
    """One policy's own setting that trades GPU-hours for attainment: its default and sweep."""

    meaning: str
    default: float
    sweep: tuple[float, ...]


KNOBS = {
    "hpa": Knob("target utilization of the request-rate capacity", 0.7, (0.2, 0.3, 0.4, 0.5, 0.6, 0.7)),
    "keda": Knob("num_requests_waiting threshold", KEDA_QUEUE_THRESHOLD, (0.5, 1.0, 2.0, 3.0, 5.0)),
    "kv-cache": Knob("gpu_cache_usage_perc target", KV_CACHE_TARGET, (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)),
    "predictive": Knob("target utilization of the load capacity", 0.7, (0.3, 0.4, 0.5, 0.6, 0.7)),
}


@dataclass(frozen=True, slots=True)
class LlmReplaySettings:
    cold_start_seconds: float = 120.0
    cold_start_spread: float = 0.2
    seed: int = 0
    min_replicas: int = 1
    max_replicas: int = 1000
    scrape_delay_seconds: float = 15.0
    rate_window_seconds: float = 60.0
    target_utilization: float = 0.7
    # HPA's per-pod request-rate target; None: its knob x the profile's capacity for the trace's
    # mean token mix.
    target_rps_per_replica: float | None = None
    # Bisection steps of the oracle's search (each a whole serving run): 9 find u within
    # 0.9 / 2^9 = 0.002, under 1 % of the GPU-hours at u near 0.2, where 6 left up to 7 %.
    oracle_iterations: int = 9
    # None: the oracle knows every second's work; S: only each S-second window's mean
    # (OracleSchedule: what a perfect forecast at that step knows).
    oracle_foresight_seconds: int | None = None
    # The attainment the oracle's search must reach; None: the one policies are compared at
    # (target_attainment).
    oracle_attainment: float | None = None

    @property
    def cold_starts(self) -> ColdStartDistribution:
        return ColdStartDistribution(self.cold_start_seconds, self.cold_start_spread, self.seed)

    @property
    def bounds(self) -> tuple[int, int]:
        return (self.min_replicas, self.max_replicas)


class ClosedLoopServingPolicy(Protocol):
    """A policy that scales the serving cluster by its own loop over the trace span (the shipped
    control loop, which the shell drives on a simulated clock: sidecar/replay_simulation)."""

    name: str

    def drive(self, cluster: ServingCluster, settings: LlmReplaySettings) -> object: ...


# knob -> the predictive policy at that target utilization, named `name`.
PredictiveFactory = Callable[[float, str], ClosedLoopServingPolicy]


def load_capacity(trace: RequestTrace, profile: ServingProfile, load: str) -> float:
    """What one replica serves flat out of `load` (requests/s, or prompt + generated tokens/s)
    with the trace's mean token mix."""
    requests = profile.capacity_rps(trace.input_tokens, trace.output_tokens)
    if load == "requests":
        return requests
    return requests * float(np.mean(trace.input_tokens + trace.output_tokens))


def idle_attainment(trace: RequestTrace, profile: ServingProfile, slo: Slo) -> float:
    """The share of requests an otherwise idle replica serves within the TTFT SLO."""
    first = trace.input_tokens / profile.prefill_tokens_per_second + profile.decode_base_seconds
    return float(np.mean(first <= slo.ttft_seconds))


def target_attainment(trace: RequestTrace, profile: ServingProfile, slo: Slo) -> float:
    """The attainment policies are compared at: 99 %, or one point below the idle ceiling."""
    return min(ORACLE_TARGET_ATTAINMENT, idle_attainment(trace, profile, slo) - IDLE_MARGIN)


def hpa_target_rps(
    trace: RequestTrace, profile: ServingProfile, settings: LlmReplaySettings, knob: float
) -> float:
    if settings.target_rps_per_replica is not None:
        return settings.target_rps_per_replica * knob / settings.target_utilization
    return knob * load_capacity(trace, profile, "requests")


def default_sweep() -> dict[str, tuple[float, ...]]:
    return {name: knob.sweep for name, knob in KNOBS.items()}


def policy_points(
    names: Iterable[str], sweep: Mapping[str, Sequence[float]] | None, settings: LlmReplaySettings
) -> list[tuple[str, float | None]]:
    """(policy, knob) to run: a policy named in `sweep` at each of its knobs, the others once at
    their default (the HPA's and predictive's is the run's target utilization)."""
    points: list[tuple[str, float | None]] = []
    for name in names:
        knob = KNOBS.get(name)
        if sweep is not None and name in sweep:
            points += [(name, float(value)) for value in sweep[name]]
        elif knob is None:
            points.append((name, None))
        else:
            default = settings.target_utilization if name in ("hpa", "predictive") else knob.default
            points.append((name, default))
    return points


def run_policies(
    trace: RequestTrace,
    profile: ServingProfile,
    names: Sequence[str],
    settings: LlmReplaySettings,
    slo: Slo,
    predictive: PredictiveFactory | None = None,
    sweep: Mapping[str, Sequence[float]] | None = None,
    progress: Callable[[ServingRun, float], None] | None = None,
) -> list[ServingRun]:
    """One run per policy, or per knob of the policies in `sweep` (named `policy@knob`);
    `predictive` builds the predictive policy, required when it is named. `progress(run,
    seconds)` is told each run and its wall time."""
    bounds = settings.bounds
    start = initial_replicas(trace, profile, settings.target_utilization, bounds)
    serving = ServingSettings(settings.min_replicas, settings.max_replicas, initial_replicas=start)
    rate_metrics = TraceMetrics(trace.arrivals_per_second(), trace.start_seconds)

    def cluster() -> ServingCluster:
        draws = settings.cold_starts.draws()
        return ServingCluster(trace, profile, serving, lambda: float(next(draws)), LlmSignals())

    def run(policy: LlmAutoscaler) -> ServingRun:
        draws = settings.cold_starts.draws()
        return serve(policy, trace, profile, serving, lambda: float(next(draws)), rate_metrics, LlmSignals())

    runs = []
    for name, knob in policy_points(names, sweep, settings):
        began = time.perf_counter()
        label = name if knob is None or sweep is None or name not in sweep else sweep_name(name, knob)
        if name == "oracle":
            runs.append(_oracle(trace, profile, settings, slo, run))
        elif name == "predictive":
            if predictive is None:
                raise ValueError("the predictive policy needs the shell's control loop (a factory)")
            assert knob is not None
            policy = predictive(knob, label)
            one = cluster()
            policy.drive(one, settings)
            runs.append(one.finish(label))
        else:
            assert knob is not None
            runs.append(run(_baseline(name, knob, label, trace, profile, settings)))
        if progress is not None:
            progress(runs[-1], time.perf_counter() - began)
    return runs


def _baseline(
    name: str,
    knob: float,
    label: str,
    trace: RequestTrace,
    profile: ServingProfile,
    settings: LlmReplaySettings,
) -> LlmAutoscaler:
    delay = settings.scrape_delay_seconds
    bounds = settings.bounds
    policy: LlmAutoscaler
    if name == "hpa":
        policy = HpaAutoscaler(  # type: ignore[assignment]
            hpa_target_rps(trace, profile, settings, knob),
            *bounds,
            metrics_delay_seconds=delay,
            metrics_window_seconds=settings.rate_window_seconds,
        )
    elif name == "keda":
        policy = KedaQueueAutoscaler(*bounds, delay, threshold=knob)
    elif name == "kv-cache":
        policy = KvCacheAutoscaler(*bounds, delay, kv_target=knob)
    else:
        raise ValueError(f"unknown LLM policy {name!r}; known: {', '.join(LLM_POLICIES)}")
    policy.name = label
    return policy


def _oracle(
    trace: RequestTrace,
    profile: ServingProfile,
    settings: LlmReplaySettings,
    slo: Slo,
    run: Callable[[LlmAutoscaler], ServingRun],
) -> ServingRun:
    results: dict[int, ServingRun] = {}

    def attainment(schedule: OracleSchedule) -> float:
        results[id(schedule)] = outcome = run(schedule)
        times = (outcome.first_token_s, outcome.finished_s)
        return score_requests(trace.arrival_s, trace.output_tokens, *times, slo)["attainment"]

    # It knows the future, its pods' cold starts included: it leads by the slowest of them.
    lead = (
        settings.cold_starts.quantile_seconds(0.99)
        if settings.cold_start_spread
        else settings.cold_start_seconds
    )
    schedule, _ = best_oracle(
        lambda u: OracleSchedule(trace, profile, u, lead, settings.bounds, settings.oracle_foresight_seconds),
        attainment,
        target_attainment(trace, profile, slo)
        if settings.oracle_attainment is None
        else settings.oracle_attainment,
        settings.oracle_iterations,
    )
    return results[id(schedule)]

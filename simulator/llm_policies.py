"""The autoscalers LLM teams run, as ticked policies over the serving cluster, and the oracle.

All of them are the Kubernetes HPA of simulator/hpa.py (`hpa_sync`), fed different metrics:
- `keda`: vLLM production-stack's KEDA ScaledObject, a Prometheus trigger on
  `sum(vllm:num_requests_waiting)` with threshold 5. KEDA hands the HPA an External AverageValue
  target of 5 and leaves spec.behavior nil (the legacy path); the metric is polled every 30 s
  (KEDA's default pollingInterval), so it is ticked every 30 s.
- `kv-cache`: the thresholds of llm-d's workload variant autoscaler (KV-cache usage 0.8, queue 5)
  as two HPA metrics, the larger proposal winning: the pods' mean `gpu_cache_usage_perc` as a
  Value target of 0.8 (ratio x ready pods) and the total queue as AverageValue 5. Not WVA's own
  algorithm (spare-capacity triggers, load redistribution): the targets, on the stock controller.
- `hpa` (request rate, today's) is simulator/hpa.HpaAutoscaler itself.
- `oracle`: knows the future; see `OracleSchedule`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy.ndimage import maximum_filter1d

from simulator.hpa import (
    ExternalTarget,
    HpaBehavior,
    HpaResult,
    HpaSpec,
    HpaState,
    Scale,
    TargetType,
    hpa_sync,
)
from simulator.request_trace import RequestTrace
from simulator.serving import LlmClusterView
from simulator.serving_profile import ServingProfile

KEDA_POLLING_SECONDS = 30.0
KEDA_QUEUE_THRESHOLD = 5.0
KV_CACHE_TARGET = 0.8
KV_QUEUE_THRESHOLD = 5.0
HPA_SYNC_SECONDS = 15.0


class _HpaOnSignals:
    """hpa_sync over metrics read from the cluster's vLLM signals at each tick."""

    name: str
    tick_seconds: float

    def __init__(self, spec: HpaSpec, delay_seconds: float) -> None:
        self.spec = spec
        self.delay_seconds = delay_seconds
        self.state = HpaState()
        self.last_result: HpaResult | None = None

    def metric_values(self, view: LlmClusterView) -> list[tuple[float, ...] | None]:
        raise NotImplementedError

    def step(self, view: LlmClusterView) -> int:
        scale = Scale(view.spec_replicas, view.status_replicas, view.ready_replicas)
        values = self.metric_values(view)
        self.last_result, self.state = hpa_sync(view.now, self.spec, scale, values, self.state)
        return self.last_result.desired_replicas


class KedaQueueAutoscaler(_HpaOnSignals):
    def __init__(
        self,
        min_replicas: int,
        max_replicas: int,
        delay_seconds: float,
        threshold: float = KEDA_QUEUE_THRESHOLD,
    ) -> None:
        spec = HpaSpec(
            metrics=(ExternalTarget(TargetType.AVERAGE_VALUE, threshold),),
            min_replicas=min_replicas,
            max_replicas=max_replicas,
            behavior=None,
        )
        super().__init__(spec, delay_seconds)
        self.name = "keda"
        self.tick_seconds = KEDA_POLLING_SECONDS

    def metric_values(self, view: LlmClusterView) -> list[tuple[float, ...] | None]:
        waiting = view.signals.num_requests_waiting(view.now, self.delay_seconds)
        return [None if waiting is None else (waiting,)]


class KvCacheAutoscaler(_HpaOnSignals):
    def __init__(
        self,
        min_replicas: int,
        max_replicas: int,
        delay_seconds: float,
        kv_target: float = KV_CACHE_TARGET,
    ) -> None:
        spec = HpaSpec(
            metrics=(
                ExternalTarget(TargetType.VALUE, kv_target),
                ExternalTarget(TargetType.AVERAGE_VALUE, KV_QUEUE_THRESHOLD),
            ),
            min_replicas=min_replicas,
            max_replicas=max_replicas,
            behavior=HpaBehavior(),
        )
        super().__init__(spec, delay_seconds)
        self.name = "kv-cache"
        self.tick_seconds = HPA_SYNC_SECONDS

    def metric_values(self, view: LlmClusterView) -> list[tuple[float, ...] | None]:
        usage = view.signals.gpu_cache_usage_perc(view.now, self.delay_seconds)
        waiting = view.signals.num_requests_waiting(view.now, self.delay_seconds)
        return [None if usage is None else (usage,), None if waiting is None else (waiting,)]


def work_per_second(trace: RequestTrace, profile: ServingProfile, window_seconds: float = 60.0) -> np.ndarray:
    """Replica-seconds of work arriving per second (profile.request_seconds), as a trailing mean
    over `window_seconds` so that a one-second burst is spread as a queue would spread it."""
    seconds = trace.duration_seconds
    work = np.bincount(
        trace.arrival_s.astype(np.int64),
        weights=profile.request_seconds(trace.input_tokens, trace.output_tokens),
        minlength=seconds,
    )
    width = max(1, int(window_seconds))
    cumulative = np.concatenate(([0.0], np.cumsum(work)))
    lo = np.maximum(np.arange(seconds) + 1 - width, 0)
    return (cumulative[1:] - cumulative[lo]) / width


def initial_replicas(
    trace: RequestTrace, profile: ServingProfile, utilization: float, bounds: tuple[int, int]
) -> int:
    """Every policy starts ready at the count the first minute's work needs at `utilization`."""
    first = work_per_second(trace, profile)[:60]
    need = math.ceil(float(np.max(first, initial=0.0)) / utilization - 1e-9)
    return min(max(need, bounds[0]), bounds[1])


def window_means(work: np.ndarray, window_seconds: int) -> np.ndarray:
    """Each second's value replaced by the mean of its aligned `window_seconds` block (the last
    block may be shorter): what a perfect forecast of the mean load at that step knows.

    Example: [1, 3, 5, 7, 9] in blocks of 2 -> [2, 2, 6, 6, 9]."""
    blocks = np.arange(len(work)) // max(1, window_seconds)
    sums = np.bincount(blocks, weights=work)
    counts = np.bincount(blocks)
    return (sums / counts)[blocks]


class OracleSchedule:
    """Knows every future arrival. need(t) = ceil(work(t) / u): the replicas that serve the work
    arriving around t at utilization u of their full-batch capacity; spec at a tick = the most
    needed over [tick, tick + lead + tick length], so pods are Ready (one cold start `lead`
    early) before the work comes, and scale down as soon as it is gone. `u` is chosen by the
    caller (bisection over whole serving runs) as the largest that meets the SLO: the cheapest
    fleet of this perfect-foresight family. It is a bound on what a policy that sizes by work
    can reach, not on every schedule (a cleverer one could ride queues through short bursts).

    `foresight_seconds` S blinds it to what a forecast cannot know: it sees only each aligned
    S-second window's mean work (a perfect forecast of the mean load at that step), not where
    the bursts fall inside it, and buys its attainment with headroom as any policy must. The
    gap between the two oracles is what knowing the bursts is worth; the gap between this one
    and a reactive baseline the most a forecast at that step could save."""

    tick_seconds = HPA_SYNC_SECONDS

    def __init__(
        self,
        trace: RequestTrace,
        profile: ServingProfile,
        utilization: float,
        lead_seconds: float,
        bounds: tuple[int, int],
        foresight_seconds: int | None = None,
    ) -> None:
        self.name = "oracle"
        self.utilization = utilization
        work = work_per_second(trace, profile)
        if foresight_seconds is not None:
            work = window_means(work, foresight_seconds)
        need = np.ceil(work / utilization - 1e-9)
        span = int(lead_seconds + self.tick_seconds) + 1
        ahead = maximum_filter1d(need[::-1], size=span, origin=(span - 1) - span // 2, mode="nearest")[::-1]
        self.plan = np.clip(ahead, *bounds).astype(np.int64)
        self.start_seconds = trace.start_seconds

    def step(self, view: LlmClusterView) -> int:
        index = min(int(view.now - self.start_seconds), len(self.plan) - 1)
        return int(self.plan[index])


def best_oracle(
    make: Callable[[float], OracleSchedule],
    attainment_of: Callable[[OracleSchedule], float],
    target: float,
    iterations: int,
) -> tuple[OracleSchedule, float]:
    """Bisection on u in [0.1, 1]: the largest u whose run meets `target` attainment (or u = 0.1,
    the most generous, when none does). Returns the schedule and its attainment."""
    best: tuple[OracleSchedule, float] | None = None
    lo, hi = 0.1, 1.0
    top = make(hi)
    top_attainment = attainment_of(top)
    if top_attainment >= target:
        return top, top_attainment
    for _ in range(iterations):
        middle = (lo + hi) / 2
        schedule = make(middle)
        attained = attainment_of(schedule)
        if attained >= target:
            best, lo = (schedule, attained), middle
        else:
            hi = middle
    if best is None:
        schedule = make(lo)
        best = (schedule, attainment_of(schedule))
    return best

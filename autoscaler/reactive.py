"""Reactive signals: the replicas each measured signal needs right now.

Each function returns None when its signal is absent, stale, not a finite non-negative number, or
not configured, so that decide() can tell "needs 0" (scale in, if allowed) from "do not know"
(hold). Two families:

- Totals (load, queue depth) divide by what one replica should carry, as HPA does for an
  AverageValue target: 70 rps at 10 rps per replica -> 7 replicas. Like HPA, a total within the
  tolerance of what the current replicas carry holds them: 6 replicas at 10 rps per replica stay
  at 6 for any load from 54 to 66 rps, so noise does not turn into scale events.
- Ratios (p99 latency, GPU utilization, KV-cache utilization, TTFT) scale the ready count by
  value / target, as HPA does for a Utilization target, with the same tolerance band: 4 ready at
  0.9 GPU against 0.6 -> 6 replicas; at 0.63 (within 10 %) -> stay at 4.
"""

from __future__ import annotations

import math
import sys

from autoscaler.observations import Observations, Reading, Signal
from autoscaler.policy import ScalingPolicy

# ceil() of a ratio that floating point left at 7.000000000000001 must still be 7, and a band edge
# must stay inside the band: 66 / 60 - 1 is 0.10000000000000009, not 0.1.
_CEIL_SLACK = 1e-9


def usable_value(reading: Reading | None, now: float, stale_after_seconds: float) -> float | None:
    """The reading's value, or None when it is missing, stale, NaN, infinite or negative."""
    if reading is None or reading.age_seconds(now) > stale_after_seconds:
        return None
    value = reading.value
    if not math.isfinite(value) or value < 0:
        return None
    return value


def replicas_for_total(total: float, per_replica: float) -> int:
    """Replicas so that each carries at most `per_replica` of `total`."""
    return max(0, _whole(total / per_replica))


def _whole(replicas: float) -> int:
    """ceil(), where a quotient that overflowed (1e308 s of latency over a 0.5 s target) is more
    replicas than any max_replicas rather than an OverflowError."""
    return math.ceil(replicas - _CEIL_SLACK) if math.isfinite(replicas) else sys.maxsize


def load_replicas(now: float, observations: Observations, policy: ScalingPolicy) -> int | None:
    rps = usable_value(observations.load, now, policy.stale_after_seconds)
    per_replica = policy.target_rps_per_replica
    if rps is None or per_replica is None:  # no capacity: the load alone says nothing about replicas
        return None
    return _total_replicas(rps, per_replica, observations.current_replicas, policy)


def queue_replicas(now: float, observations: Observations, policy: ScalingPolicy) -> int | None:
    target = policy.queue_depth_target_per_replica
    waiting = usable_value(observations.queue_depth, now, policy.stale_after_seconds)
    if target is None or waiting is None:
        return None
    return _total_replicas(waiting, target, observations.current_replicas, policy)


def _total_replicas(total: float, per_replica: float, current: int | None, policy: ScalingPolicy) -> int:
    if current and abs(total / (per_replica * current) - 1.0) <= policy.tolerance + _CEIL_SLACK:
        return current
    return replicas_for_total(total, per_replica)


def latency_replicas(now: float, observations: Observations, policy: ScalingPolicy) -> int | None:
    return _ratio_replicas(
        now, observations, observations.p99_latency, policy.p99_latency_target_seconds, policy
    )


def gpu_replicas(now: float, observations: Observations, policy: ScalingPolicy) -> int | None:
    return _ratio_replicas(
        now, observations, observations.gpu_utilization, policy.gpu_utilization_target, policy
    )


def kv_cache_replicas(now: float, observations: Observations, policy: ScalingPolicy) -> int | None:
    return _ratio_replicas(
        now, observations, observations.kv_cache_utilization, policy.kv_cache_utilization_target, policy
    )


def ttft_replicas(now: float, observations: Observations, policy: ScalingPolicy) -> int | None:
    return _ratio_replicas(now, observations, observations.ttft, policy.ttft_target_seconds, policy)


def _ratio_replicas(
    now: float,
    observations: Observations,
    reading: Reading | None,
    target: float | None,
    policy: ScalingPolicy,
) -> int | None:
    value = usable_value(reading, now, policy.stale_after_seconds)
    serving = observations.ready_replicas
    if serving is None:
        serving = observations.current_replicas
    # No serving replica means no latency or GPU figure describes this count: nothing to scale.
    if target is None or value is None or not serving:
        return None
    ratio = value / target
    if abs(ratio - 1.0) <= policy.tolerance + _CEIL_SLACK:
        return serving
    return _whole(serving * ratio)


SIGNALS = {
    Signal.LOAD: load_replicas,
    Signal.P99_LATENCY: latency_replicas,
    Signal.QUEUE_DEPTH: queue_replicas,
    Signal.GPU_UTILIZATION: gpu_replicas,
    Signal.KV_CACHE_UTILIZATION: kv_cache_replicas,
    Signal.TTFT: ttft_replicas,
}


def reactive_recommendations(now: float, observations: Observations, policy: ScalingPolicy) -> dict[str, int]:
    """What every live signal asks for, by signal name; a dead signal has no entry."""
    asked = {name: signal(now, observations, policy) for name, signal in SIGNALS.items()}
    return {name: replicas for name, replicas in asked.items() if replicas is not None}

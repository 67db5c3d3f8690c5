"""Capacity learned online: the load one ready replica sustains before its queue grows or its time
to first token crosses the bound, for workloads whose settings give no `replica_capacity_rps`.

Every tick gives one pair: x = the load per ready replica (in the load's unit, requests or tokens
per second), and whether the fleet was saturated then: waiting requests per ready replica above
the queue target, or the TTFT above its bound. Healthy pairs lie below the capacity and saturated
ones at or above it, so the estimate is the boundary on x that misclassifies the fewest pairs (a
one-split decision stump): noise on either side (a queue still draining after a burst, a TTFT
spike from one long prompt) costs a few errors and does not move the split.

The evidence is a histogram of pair counts on a 2 % logarithmic grid of x, so it takes a few
hundred integers whatever the load's unit or scale, and updating it is one increment. Until both
sides hold enough pairs (at 15 s ticks, five minutes each) there is no estimate, and decide()
scales on the reactive signals alone: a capacity guessed from healthy pairs only is a lower bound
that would pin the fleet above what it needs, and one from saturated pairs only has no floor.

Example: pairs at 2, 3, 4 rps per replica healthy and at 5, 6 rps saturated, 20 of each, split
between the 4 and 5 bins: the estimate is their geometric middle, about 4.5 rps.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from autoscaler.observations import Observations
from autoscaler.policy import ScalingPolicy
from autoscaler.reactive import usable_value

BIN_RATIO = 1.02
MIN_PAIRS_PER_SIDE = 20
# Without a queue target, one waiting request per ready replica counts as a growing queue: a
# continuously batching engine admits a new request at its next step, so a standing queue means
# the batch or the KV cache is full.
DEFAULT_SATURATED_QUEUE_PER_REPLICA = 1.0
_LOG_RATIO = math.log(BIN_RATIO)


@dataclass(frozen=True, slots=True)
class CapacityPair:
    """One tick's evidence: the load per ready replica and whether the fleet was saturated."""

    load_per_replica: float
    saturated: bool
    observed_at: float


@dataclass(frozen=True, slots=True)
class CapacityEvidence:
    """Pair counts per grid bin (bin i holds x in [1.02^(i - 1/2), 1.02^(i + 1/2))), by side.
    `last_observed_at` is the newest load reading counted, so a reading kept over a failed query
    is counted once, not once per tick."""

    healthy: Mapping[int, int] = field(default_factory=dict)
    saturated: Mapping[int, int] = field(default_factory=dict)
    last_observed_at: float | None = None

    @property
    def pairs(self) -> tuple[int, int]:
        """(healthy, saturated) pairs counted."""
        return sum(self.healthy.values()), sum(self.saturated.values())


@dataclass(frozen=True, slots=True)
class CapacityEstimate:
    """What a replica sustains (the load's unit per second) and the pairs it rests on."""

    per_replica: float
    healthy_pairs: int
    saturated_pairs: int


def capacity_pair(now: float, observations: Observations, policy: ScalingPolicy) -> CapacityPair | None:
    """The pair this tick offers, or None: no live load, no ready replica, or neither the queue
    nor the TTFT live to say whether the fleet keeps up (a TTFT counts only with a bound set)."""
    stale = policy.stale_after_seconds
    load = usable_value(observations.load, now, stale)
    ready = observations.ready_replicas
    if ready is None:
        ready = observations.current_replicas
    if load is None or not ready or observations.load is None:
        return None
    waiting = usable_value(observations.queue_depth, now, stale)
    bound = policy.ttft_target_seconds
    ttft = usable_value(observations.ttft, now, stale) if bound is not None else None
    if waiting is None and ttft is None:
        return None
    queue_bound = policy.queue_depth_target_per_replica or DEFAULT_SATURATED_QUEUE_PER_REPLICA
    queue_over = waiting is not None and waiting / ready > queue_bound
    ttft_over = ttft is not None and bound is not None and ttft > bound
    return CapacityPair(load / ready, queue_over or ttft_over, observations.load.observed_at)


def record_pair(evidence: CapacityEvidence, pair: CapacityPair | None) -> CapacityEvidence:
    """The evidence with `pair` counted; unchanged for None, an idle fleet (x = 0 says nothing
    about capacity) or a reading already counted."""
    if pair is None or pair.load_per_replica <= 0 or not math.isfinite(pair.load_per_replica):
        return evidence
    last = evidence.last_observed_at
    if last is not None and pair.observed_at <= last:
        return evidence
    index = round(math.log(pair.load_per_replica) / _LOG_RATIO)
    side = evidence.saturated if pair.saturated else evidence.healthy
    counted = {**side, index: side.get(index, 0) + 1}
    if pair.saturated:
        return CapacityEvidence(evidence.healthy, counted, pair.observed_at)
    return CapacityEvidence(counted, evidence.saturated, pair.observed_at)


def estimate_capacity(evidence: CapacityEvidence) -> CapacityEstimate | None:
    """The split with the fewest misclassified pairs, or None until at least MIN_PAIRS_PER_SIDE
    healthy pairs lie below it and as many saturated ones above it. Of equally good splits the
    lowest wins: too low a capacity costs replicas, too high one costs the latency target."""
    bins = sorted({*evidence.healthy, *evidence.saturated})
    total_healthy, total_saturated = evidence.pairs
    saturated_below = healthy_below = 0
    best: tuple[int, int, int, int] | None = None  # errors, split, healthy below, saturated above
    for split in range(1, len(bins)):
        healthy_below += evidence.healthy.get(bins[split - 1], 0)
        saturated_below += evidence.saturated.get(bins[split - 1], 0)
        errors = saturated_below + (total_healthy - healthy_below)
        if best is None or errors < best[0]:
            best = (errors, split, healthy_below, total_saturated - saturated_below)
    if best is None:
        return None
    _, split, healthy, saturated = best
    if healthy < MIN_PAIRS_PER_SIDE or saturated < MIN_PAIRS_PER_SIDE:
        return None
    middle = (bins[split - 1] + bins[split]) / 2
    return CapacityEstimate(BIN_RATIO**middle, healthy, saturated)

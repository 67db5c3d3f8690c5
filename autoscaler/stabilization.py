"""HPA v2 `behavior` rules as pure functions: stabilization windows, Pods/Percent rate limits and
the scale-event bookkeeping they depend on (k8s-contract.md sections 3.8 and 3.9).

The faithful HPA simulator and decide() both call these, so "HPA-compatible" means the same code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import StrEnum

from autoscaler.decision import Recommendation, ScaleEvent
from autoscaler.policy import RatePolicyType, ScalingRules, SelectPolicy


class Limit(StrEnum):
    """Which bound, if any, changed the recommendation (HPA's ScalingLimited reasons)."""

    WITHIN_RANGE = "DesiredWithinRange"
    SCALE_UP_LIMIT = "ScaleUpLimit"
    SCALE_DOWN_LIMIT = "ScaleDownLimit"
    TOO_MANY = "TooManyReplicas"
    TOO_FEW = "TooFewReplicas"


def stabilize(
    now: float,
    desired: int,
    current: int,
    recommendations: Sequence[Recommendation],
    scale_up: ScalingRules,
    scale_down: ScalingRules,
) -> tuple[int, tuple[Recommendation, ...]]:
    """Step A of normalizeDesiredReplicasWithBehaviors.

    Scale-up takes the *lowest* recommendation inside the up window and scale-down the *highest*
    inside the down window, so a single spike or dip inside a window moves nothing. Windows are
    strict (`at > now - window`), as in the controller. Returns the stabilized count and the
    recommendation history with `desired` (raw, unclamped) appended and entries older than both
    windows dropped, which the controller would overwrite anyway.
    """
    up_cutoff = now - scale_up.stabilization_window_seconds
    down_cutoff = now - scale_down.stabilization_window_seconds
    up_recommendation = min([desired, *(r.replicas for r in recommendations if r.at > up_cutoff)])
    down_recommendation = max([desired, *(r.replicas for r in recommendations if r.at > down_cutoff)])
    stabilized = current
    if stabilized < up_recommendation:
        stabilized = up_recommendation
    if stabilized > down_recommendation:
        stabilized = down_recommendation
    oldest_kept = min(up_cutoff, down_cutoff)
    kept = tuple(r for r in recommendations if r.at > oldest_kept)
    return stabilized, (*kept, Recommendation(now, desired))


def _change_in_period(events: Sequence[ScaleEvent], now: float, period_seconds: float) -> tuple[int, int]:
    """Replicas (added, deleted) by events strictly inside the last `period_seconds`."""
    cutoff = now - period_seconds
    added = sum(e.change for e in events if e.change > 0 and e.at > cutoff)
    deleted = sum(-e.change for e in events if e.change < 0 and e.at > cutoff)
    return added, deleted


def scale_up_limit(now: float, current: int, events: Sequence[ScaleEvent], rules: ScalingRules) -> int:
    """Highest count the scale-up policies allow now. Worked example (defaults, 4 pods, nothing
    added in the last 15 s): max(4 + 4, ceil(4 * 2.0)) = 8."""
    if rules.select_policy is SelectPolicy.DISABLED or not rules.policies:
        return current
    limits = []
    for policy in rules.policies:
        added, deleted = _change_in_period(events, now, policy.period_seconds)
        start = current - added + deleted
        if policy.type is RatePolicyType.PODS:
            limits.append(start + policy.value)
        else:
            limits.append(math.ceil(start * (1 + policy.value / 100)))
    return max(limits) if rules.select_policy is SelectPolicy.MAX else min(limits)


def scale_down_limit(now: float, current: int, events: Sequence[ScaleEvent], rules: ScalingRules) -> int:
    """Lowest count the scale-down policies allow now; Percent truncates like the controller's
    int32 conversion (10 pods, 50 % -> 5; 5 pods, 50 % -> 2)."""
    if rules.select_policy is SelectPolicy.DISABLED or not rules.policies:
        return current
    limits = []
    for policy in rules.policies:
        added, deleted = _change_in_period(events, now, policy.period_seconds)
        start = current - added + deleted
        if policy.type is RatePolicyType.PODS:
            limits.append(start - policy.value)
        else:
            limits.append(int(start * (1 - policy.value / 100)))
    # "Max" selects the policy allowing the largest change, i.e. the lowest floor.
    return min(limits) if rules.select_policy is SelectPolicy.MAX else max(limits)


def rate_limit(
    now: float,
    recommended: int,
    current: int,
    min_replicas: int,
    max_replicas: int,
    events: Sequence[ScaleEvent],
    scale_up: ScalingRules,
    scale_down: ScalingRules,
) -> tuple[int, Limit]:
    """Step B (convertDesiredReplicasWithBehaviorRate): clamp a stabilized recommendation to the
    rate policies and to [min_replicas, max_replicas]."""
    if recommended > current:
        limit = max(scale_up_limit(now, current, events, scale_up), current)
        if max_replicas > limit:
            allowed, reason = limit, Limit.SCALE_UP_LIMIT
        else:
            allowed, reason = max_replicas, Limit.TOO_MANY
        if recommended > allowed:
            return allowed, reason
    elif recommended < current:
        limit = min(scale_down_limit(now, current, events, scale_down), current)
        if min_replicas < limit:
            allowed, reason = limit, Limit.SCALE_DOWN_LIMIT
        else:
            allowed, reason = min_replicas, Limit.TOO_FEW
        if recommended < allowed:
            return allowed, reason
    return recommended, Limit.WITHIN_RANGE


def record_scale_event(
    now: float,
    previous: int,
    new: int,
    events: Sequence[ScaleEvent],
    scale_up: ScalingRules,
    scale_down: ScalingRules,
) -> tuple[ScaleEvent, ...]:
    """Step C (storeScaleEvent): remember a published change; forget events older than the
    longest period of their direction, since no policy can count them any more."""
    longest_up = max((p.period_seconds for p in scale_up.policies), default=0.0)
    longest_down = max((p.period_seconds for p in scale_down.policies), default=0.0)
    kept = tuple(e for e in events if e.at > now - (longest_up if e.change > 0 else longest_down))
    if new == previous:
        return kept
    return (*kept, ScaleEvent(now, new - previous))

"""Cost-matched comparison: each policy's trade-off curve between unserved demand and
replica-hours, swept over its target utilization with the replica capacity fixed, and a policy
judged against a baseline's whole curve instead of one operating point.

"At the violation my HPA gives me, how many replica-hours does this save?" is the baseline's
replica-hours interpolated at the policy's violation (piecewise linear in log violation, between
the two swept points around it), over the policy's own. "What does it buy at equal cost?" is the
baseline's violation interpolated at the policy's replica-hours. Outside the swept range the
answer is None and `inside` says so: the curve is not extrapolated.

Violations under VIOLATION_FLOOR (1e-6, one request in a million) count as the floor on the
log axis, so a zero-violation point still lies on the curve.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

SWEEP_TARGETS = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75)
VIOLATION_FLOOR = 1e-6
SEPARATOR = "@"


@dataclass(frozen=True, slots=True)
class FrontierPoint:
    policy: str
    target_utilization: float
    violation_ratio: float
    replica_hours: float


@dataclass(frozen=True, slots=True)
class Comparison:
    """`policy` at its default point against `baseline`'s curve."""

    policy: str
    baseline: str
    violation_ratio: float
    replica_hours: float
    baseline_hours_at_same_violation: float | None
    baseline_violation_at_same_hours: float | None
    violation_inside: bool
    hours_inside: bool

    @property
    def baseline_extra_hours(self) -> float | None:
        """How much more the baseline spends at the same violation: 0.15 is 15 % more."""
        hours = self.baseline_hours_at_same_violation
        return None if hours is None or self.replica_hours <= 0 else hours / self.replica_hours - 1

    @property
    def violation_vs_baseline(self) -> float | None:
        """The policy's violation over the baseline's at the same replica-hours."""
        violation = self.baseline_violation_at_same_hours
        if violation is None:
            return None
        return _floored(self.violation_ratio) / _floored(violation)


def sweep_name(policy: str, target_utilization: float) -> str:
    """The occupancy name of one swept point: hpa@0.55."""
    return f"{policy}{SEPARATOR}{target_utilization:g}"


def parse_sweep_name(name: str) -> tuple[str, float] | None:
    policy, separator, knob = name.rpartition(SEPARATOR)
    if not separator:
        return None
    try:
        return policy, float(knob)
    except ValueError:
        return None


def curves(points: Iterable[FrontierPoint]) -> dict[str, list[FrontierPoint]]:
    """Points per policy, in order of target utilization."""
    by_policy: dict[str, list[FrontierPoint]] = {}
    for point in points:
        by_policy.setdefault(point.policy, []).append(point)
    return {name: sorted(curve, key=lambda p: p.target_utilization) for name, curve in by_policy.items()}


def hours_at_violation(curve: Sequence[FrontierPoint], violation: float) -> float | None:
    """The curve's replica-hours at `violation`, piecewise linear in log violation.

    Example: points (0.001, 110 h) and (0.01, 100 h) give 105 h at 0.00316 (halfway in log).
    """
    ordered = sorted(curve, key=lambda p: _floored(p.violation_ratio))
    x = math.log(_floored(violation))
    for low, high in itertools.pairwise(ordered):
        x0, x1 = math.log(_floored(low.violation_ratio)), math.log(_floored(high.violation_ratio))
        if x0 <= x <= x1:
            share = 0.0 if x1 == x0 else (x - x0) / (x1 - x0)
            return low.replica_hours + share * (high.replica_hours - low.replica_hours)
    if len(ordered) == 1 and _floored(ordered[0].violation_ratio) == _floored(violation):
        return ordered[0].replica_hours
    return None


def violation_at_hours(curve: Sequence[FrontierPoint], hours: float) -> float | None:
    """The curve's violation at `hours`, log violation linear in replica-hours between points."""
    ordered = sorted(curve, key=lambda p: p.replica_hours)
    for low, high in itertools.pairwise(ordered):
        if low.replica_hours <= hours <= high.replica_hours:
            span = high.replica_hours - low.replica_hours
            share = 0.0 if span == 0 else (hours - low.replica_hours) / span
            y0, y1 = math.log(_floored(low.violation_ratio)), math.log(_floored(high.violation_ratio))
            return math.exp(y0 + share * (y1 - y0))
    if len(ordered) == 1 and ordered[0].replica_hours == hours:
        return ordered[0].violation_ratio
    return None


def compare(policy: FrontierPoint, baseline: Sequence[FrontierPoint]) -> Comparison:
    at_violation = hours_at_violation(baseline, policy.violation_ratio)
    at_hours = violation_at_hours(baseline, policy.replica_hours)
    return Comparison(
        policy=policy.policy,
        baseline=baseline[0].policy if baseline else "",
        violation_ratio=policy.violation_ratio,
        replica_hours=policy.replica_hours,
        baseline_hours_at_same_violation=at_violation,
        baseline_violation_at_same_hours=at_hours,
        violation_inside=at_violation is not None,
        hours_inside=at_hours is not None,
    )


def _floored(violation: float) -> float:
    return max(violation, VIOLATION_FLOOR)

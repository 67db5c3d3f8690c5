"""Cost-matched comparison: each policy's trade-off curve between a violation share and the hours
it pays, swept over its own knob, and a policy judged against a baseline's whole curve instead of
one operating point. The units are the caller's: in the request-rate replay the unserved share
of demand against replica-hours, swept over target utilization with the replica capacity fixed;
in the LLM replay the share of requests missing the TTFT SLO (1 - attainment) against
GPU-hours, each policy over its own knob (HPA's target utilization, KEDA's queue threshold...).

"At the violation my HPA gives me, how many hours does this save?" is the baseline's hours
interpolated at the policy's violation (piecewise linear in log violation, between the two swept
points around it), over the policy's own. "What does it buy at equal cost?" is the baseline's
violation interpolated at the policy's hours. "What does each pay for 99 % attainment?" is every
curve's hours at one violation (`at_violation`). Outside the swept range the answer is None and
`inside` says so: the curve is not extrapolated.

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
    """One swept run: the policy's knob value, its violation share and the hours it paid."""

    policy: str
    knob: float
    violation_ratio: float
    hours: float


@dataclass(frozen=True, slots=True)
class Comparison:
    """`policy` at its default point against `baseline`'s curve."""

    policy: str
    baseline: str
    violation_ratio: float
    hours: float
    baseline_hours_at_same_violation: float | None
    baseline_violation_at_same_hours: float | None
    violation_inside: bool
    hours_inside: bool

    @property
    def baseline_extra_hours(self) -> float | None:
        """How much more the baseline spends at the same violation: 0.15 is 15 % more."""
        hours = self.baseline_hours_at_same_violation
        return None if hours is None or self.hours <= 0 else hours / self.hours - 1

    @property
    def violation_vs_baseline(self) -> float | None:
        """The policy's violation over the baseline's at the same replica-hours."""
        violation = self.baseline_violation_at_same_hours
        if violation is None:
            return None
        return _floored(self.violation_ratio) / _floored(violation)


def sweep_name(policy: str, knob: float) -> str:
    """The occupancy name of one swept point: hpa@0.55."""
    return f"{policy}{SEPARATOR}{knob:g}"


def parse_sweep_name(name: str) -> tuple[str, float] | None:
    policy, separator, knob = name.rpartition(SEPARATOR)
    if not separator:
        return None
    try:
        return policy, float(knob)
    except ValueError:
        return None


def curves(points: Iterable[FrontierPoint]) -> dict[str, list[FrontierPoint]]:
    """Points per policy, in order of their knob."""
    by_policy: dict[str, list[FrontierPoint]] = {}
    for point in points:
        by_policy.setdefault(point.policy, []).append(point)
    return {name: sorted(curve, key=lambda p: p.knob) for name, curve in by_policy.items()}


def hours_at_violation(curve: Sequence[FrontierPoint], violation: float) -> float | None:
    """The curve's hours at `violation`, piecewise linear in log violation.

    Example: points (0.001, 110 h) and (0.01, 100 h) give 105 h at 0.00316 (halfway in log).
    """
    ordered = sorted(curve, key=lambda p: _floored(p.violation_ratio))
    x = math.log(_floored(violation))
    for low, high in itertools.pairwise(ordered):
        x0, x1 = math.log(_floored(low.violation_ratio)), math.log(_floored(high.violation_ratio))
        if x0 <= x <= x1:
            share = 0.0 if x1 == x0 else (x - x0) / (x1 - x0)
            return low.hours + share * (high.hours - low.hours)
    if len(ordered) == 1 and _floored(ordered[0].violation_ratio) == _floored(violation):
        return ordered[0].hours
    return None


def violation_at_hours(curve: Sequence[FrontierPoint], hours: float) -> float | None:
    """The curve's violation at `hours`, log violation linear in hours between points."""
    ordered = sorted(curve, key=lambda p: p.hours)
    for low, high in itertools.pairwise(ordered):
        if low.hours <= hours <= high.hours:
            span = high.hours - low.hours
            share = 0.0 if span == 0 else (hours - low.hours) / span
            y0, y1 = math.log(_floored(low.violation_ratio)), math.log(_floored(high.violation_ratio))
            return math.exp(y0 + share * (y1 - y0))
    if len(ordered) == 1 and ordered[0].hours == hours:
        return ordered[0].violation_ratio
    return None


def compare(policy: FrontierPoint, baseline: Sequence[FrontierPoint]) -> Comparison:
    at_violation = hours_at_violation(baseline, policy.violation_ratio)
    at_hours = violation_at_hours(baseline, policy.hours)
    return Comparison(
        policy=policy.policy,
        baseline=baseline[0].policy if baseline else "",
        violation_ratio=policy.violation_ratio,
        hours=policy.hours,
        baseline_hours_at_same_violation=at_violation,
        baseline_violation_at_same_hours=at_hours,
        violation_inside=at_violation is not None,
        hours_inside=at_hours is not None,
    )


@dataclass(frozen=True, slots=True)
class AtViolation:
    """One curve at one violation: its hours there (None outside its swept range), the cheapest
    swept point at or under it (None when no point gets there), and the least violation it
    reached at all, with its hours."""

    policy: str
    hours: float | None
    cheapest_meeting_hours: float | None
    cheapest_meeting_knob: float | None
    least_violation: float
    hours_at_least_violation: float


def at_violation(curve: Sequence[FrontierPoint], violation: float) -> AtViolation:
    meeting = [p for p in curve if _floored(p.violation_ratio) <= _floored(violation)]
    cheapest = min(meeting, key=lambda p: p.hours) if meeting else None
    least = min(curve, key=lambda p: (p.violation_ratio, p.hours))
    return AtViolation(
        policy=curve[0].policy,
        hours=hours_at_violation(curve, violation),
        cheapest_meeting_hours=None if cheapest is None else cheapest.hours,
        cheapest_meeting_knob=None if cheapest is None else cheapest.knob,
        least_violation=least.violation_ratio,
        hours_at_least_violation=least.hours,
    )


def _floored(violation: float) -> float:
    return max(violation, VIOLATION_FLOOR)

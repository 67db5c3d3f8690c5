"""HPA behavior rules: the k8s-contract.md section 3.10 worked example, rate-limit tables and the
strictness of window edges."""

from __future__ import annotations

from dataclasses import replace

import pytest

from autoscaler.decide import decide
from autoscaler.decision import DecisionState, Reason, Recommendation, ScaleEvent
from autoscaler.observations import Observations, Reading
from autoscaler.policy import (
    RatePolicy,
    RatePolicyType,
    ScalingPolicy,
    ScalingRules,
    SelectPolicy,
    default_scale_down,
    default_scale_up,
)
from autoscaler.stabilization import (
    Limit,
    rate_limit,
    record_scale_event,
    scale_down_limit,
    scale_up_limit,
    stabilize,
)

UP = default_scale_up()
DOWN = default_scale_down()
PODS = RatePolicyType.PODS
PERCENT = RatePolicyType.PERCENT


def _hpa_tick(
    now: float, desired: int, current: int, recs: tuple[Recommendation, ...], events: tuple[ScaleEvent, ...]
) -> tuple[int, Limit, tuple[Recommendation, ...], tuple[ScaleEvent, ...]]:
    stabilized, recs = stabilize(now, desired, current, recs, UP, DOWN)
    replicas, limit = rate_limit(now, stabilized, current, 1, 100, events, UP, DOWN)
    events = record_scale_event(now, current, replicas, events, UP, DOWN)
    return replicas, limit, recs, events


def test_worked_example_step_by_step() -> None:
    """k8s-contract.md 3.10: 95 rps over 4 pods at target 10 -> proposal 10."""
    recs: tuple[Recommendation, ...] = ()
    events: tuple[ScaleEvent, ...] = ()
    # t=0: up limit max(4 + 4, ceil(4 * 2)) = 8 < 10 -> 8, ScaleUpLimit.
    replicas, limit, recs, events = _hpa_tick(0.0, 10, 4, recs, events)
    assert (replicas, limit) == (8, Limit.SCALE_UP_LIMIT)
    assert events == (ScaleEvent(0.0, 4),)
    # t=10: the +4 is inside the 15 s period, start = 8 - 4 = 4 -> limit 8: stays 8.
    assert rate_limit(10.0, 10, 8, 1, 100, events, UP, DOWN) == (8, Limit.SCALE_UP_LIMIT)
    # t=15: the event sits exactly on the (strict) period edge, so it no longer counts: limit 16 -> 10.
    replicas, limit, recs, events = _hpa_tick(15.0, 10, 8, recs, events)
    assert (replicas, limit) == (10, Limit.WITHIN_RANGE)
    # t=30..300: load drops to 20 -> proposal 2, but the down window keeps the 10s of t=0 and t=15.
    current = replicas
    for now in range(30, 301, 15):
        replicas, limit, recs, events = _hpa_tick(float(now), 2, current, recs, events)
        assert replicas == 10, now
    # t=315: the last 10 (t=15) left the window; Percent 100 allows any drop -> 2.
    replicas, limit, recs, events = _hpa_tick(315.0, 2, current, recs, events)
    assert (replicas, limit) == (2, Limit.WITHIN_RANGE)
    assert events[-1] == ScaleEvent(315.0, -8)


def test_worked_example_through_decide() -> None:
    # Panic is turned off: 10 / 4 = 2.5 would otherwise jump straight to 10.
    policy = ScalingPolicy(
        replica_capacity_rps=10.0, target_utilization=1.0, panic_threshold=100.0
    ).validate()
    state = DecisionState()
    current = 4
    expected = [(0, 95.0, 8, Reason.RATE_LIMITED), (15, 95.0, 10, Reason.LOAD)]
    expected += [(t, 20.0, 10, Reason.STABILIZED) for t in range(30, 301, 15)]
    expected += [(315, 20.0, 2, Reason.LOAD)]
    for now, rps, replicas, reason in expected:
        observations = Observations(
            at=float(now), current_replicas=current, ready_replicas=current, load=Reading(rps, float(now))
        )
        decision, state = decide(float(now), observations, None, policy, state)
        assert (decision.replicas, decision.reason) == (replicas, reason), now
        current = decision.replicas


def _rules(select: SelectPolicy, *policies: tuple[RatePolicyType, int, float]) -> ScalingRules:
    return ScalingRules(0.0, select, tuple(RatePolicy(t, v, p) for t, v, p in policies))


@pytest.mark.parametrize(
    ("rules", "current", "events", "expected"),
    [
        pytest.param(UP, 4, (), 8, id="defaults from 4 pods allow 8"),
        pytest.param(UP, 10, (), 20, id="defaults from 10 pods: Percent 100 beats Pods 4"),
        pytest.param(UP, 2, (), 6, id="defaults from 2 pods: Pods 4 beats Percent 100"),
        pytest.param(
            _rules(SelectPolicy.MIN, (PODS, 4, 15), (PERCENT, 100, 15)), 10, (), 14, id="Min picks Pods"
        ),
        pytest.param(
            _rules(SelectPolicy.DISABLED, (PODS, 4, 15)), 10, (), 10, id="Disabled allows no change"
        ),
        pytest.param(
            _rules(SelectPolicy.MAX, (PERCENT, 50, 60)), 3, (), 5, id="Percent rounds up: ceil(4.5)"
        ),
        pytest.param(UP, 8, (ScaleEvent(95.0, 4),), 8, id="an event inside the period counts from the start"),
        pytest.param(UP, 8, (ScaleEvent(85.0, 4),), 16, id="an event on the period edge no longer counts"),
        pytest.param(UP, 8, (ScaleEvent(50.0, 4),), 16, id="an event outside the period does not count"),
        pytest.param(
            _rules(SelectPolicy.MAX, (PODS, 2, 60)),
            6,
            (ScaleEvent(90.0, -2),),
            10,
            id="deletions inside the period raise the start",
        ),
    ],
)
def test_scale_up_limit(
    rules: ScalingRules, current: int, events: tuple[ScaleEvent, ...], expected: int
) -> None:
    assert scale_up_limit(100.0, current, events, rules) == expected


@pytest.mark.parametrize(
    ("rules", "current", "events", "expected"),
    [
        pytest.param(DOWN, 10, (), 0, id="default Percent 100 allows dropping to 0"),
        pytest.param(_rules(SelectPolicy.MAX, (PERCENT, 50, 60)), 10, (), 5, id="Percent 50 of 10 is 5"),
        pytest.param(_rules(SelectPolicy.MAX, (PERCENT, 50, 60)), 5, (), 2, id="Percent truncates 2.5 to 2"),
        pytest.param(_rules(SelectPolicy.MAX, (PERCENT, 30, 60)), 7, (), 4, id="Percent truncates 4.9 to 4"),
        pytest.param(
            _rules(SelectPolicy.MAX, (PODS, 3, 60), (PERCENT, 50, 60)),
            10,
            (),
            5,
            id="Max picks the lower floor",
        ),
        pytest.param(
            _rules(SelectPolicy.MIN, (PODS, 3, 60), (PERCENT, 50, 60)),
            10,
            (),
            7,
            id="Min picks the higher floor",
        ),
        pytest.param(_rules(SelectPolicy.DISABLED, (PODS, 3, 60)), 10, (), 10, id="Disabled allows no drop"),
        pytest.param(
            _rules(SelectPolicy.MAX, (PODS, 3, 60)),
            7,
            (ScaleEvent(50.0, -3),),
            7,
            id="a drop inside the period uses it up",
        ),
        pytest.param(
            _rules(SelectPolicy.MAX, (PODS, 3, 60)),
            7,
            (ScaleEvent(40.0, -3),),
            4,
            id="a drop on the period edge is forgotten",
        ),
    ],
)
def test_scale_down_limit(
    rules: ScalingRules, current: int, events: tuple[ScaleEvent, ...], expected: int
) -> None:
    assert scale_down_limit(100.0, current, events, rules) == expected


@pytest.mark.parametrize(
    ("recommended", "current", "min_replicas", "max_replicas", "expected"),
    [
        pytest.param(6, 4, 1, 100, (6, Limit.WITHIN_RANGE), id="within the up limit passes"),
        pytest.param(12, 4, 1, 100, (8, Limit.SCALE_UP_LIMIT), id="over the up limit is clamped to it"),
        pytest.param(12, 4, 1, 6, (6, Limit.TOO_MANY), id="max below the up limit binds as TooMany"),
        pytest.param(0, 4, 2, 100, (2, Limit.TOO_FEW), id="min binds on the way down as TooFew"),
        pytest.param(
            4, 4, 1, 2, (4, Limit.WITHIN_RANGE), id="an unchanged count is left alone even above max"
        ),
    ],
)
def test_rate_limit(
    recommended: int, current: int, min_replicas: int, max_replicas: int, expected: tuple[int, Limit]
) -> None:
    assert rate_limit(100.0, recommended, current, min_replicas, max_replicas, (), UP, DOWN) == expected


@pytest.mark.parametrize(
    ("rec_at", "expected"),
    [
        pytest.param(700.0, 10, id="a recommendation inside the down window holds the count"),
        pytest.param(699.0, 2, id="a recommendation exactly on the down window edge is out"),
        pytest.param(600.0, 2, id="a recommendation older than the window is out"),
    ],
)
def test_down_window_edge_is_strict(rec_at: float, expected: int) -> None:
    stabilized, kept = stabilize(999.0, 2, 10, (Recommendation(rec_at, 10),), UP, DOWN)
    assert stabilized == expected
    assert kept[-1] == Recommendation(999.0, 2)


@pytest.mark.parametrize(
    ("rec_at", "expected"),
    [
        pytest.param(950.0, 4, id="a low recommendation inside the up window holds a scale-up back"),
        pytest.param(940.0, 9, id="a low recommendation on the up window edge is out"),
    ],
)
def test_up_window_edge_is_strict(rec_at: float, expected: int) -> None:
    up = replace(UP, stabilization_window_seconds=60.0)
    stabilized, _ = stabilize(1000.0, 9, 4, (Recommendation(rec_at, 4),), up, DOWN)
    assert stabilized == expected


def test_stabilize_forgets_recommendations_older_than_both_windows() -> None:
    recs = (Recommendation(100.0, 5), Recommendation(500.0, 6))
    _, kept = stabilize(700.0, 3, 3, recs, UP, DOWN)
    assert kept == (Recommendation(500.0, 6), Recommendation(700.0, 3))


def test_record_scale_event_keeps_only_changes_within_the_longest_period() -> None:
    events = (ScaleEvent(80.0, 2), ScaleEvent(95.0, 1), ScaleEvent(50.0, -1), ScaleEvent(90.0, -2))
    assert record_scale_event(100.0, 5, 5, events, UP, DOWN) == (ScaleEvent(95.0, 1), ScaleEvent(90.0, -2))
    assert record_scale_event(100.0, 5, 3, (), UP, DOWN) == (ScaleEvent(100.0, -2),)

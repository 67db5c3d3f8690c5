"""The TTFT objective: the share over the target read from histogram buckets, and how its misses
move the objective's level beside the load's."""

from __future__ import annotations

import math

import pytest

from autoscaler.latency_misses import share_over
from autoscaler.objective import ObjectiveState, OperatingPoint, observe, status, within_objective
from autoscaler.observations import Histogram, Observations, Reading
from autoscaler.policy import PolicyError, ScalingPolicy

INF = math.inf
# vLLM's TTFT edges around a 2 s target.
EDGES = (0.5, 1.0, 2.5, INF)


def _h(counts: tuple[float, ...], bounds: tuple[float, ...] = EDGES, at: float = 0.0) -> Histogram:
    return Histogram(bounds, counts, at)


@pytest.mark.parametrize(
    ("counts", "bounds", "bound", "expected"),
    [
        # Between edges: 50 at 1 s, 90 at 2.5 s: 2 s is 2/3 into the bucket -> 76.67 at or below.
        ((20, 50, 90, 100), EDGES, 2.0, 1 - (50 + 40 * (1.0 / 1.5)) / 100),
        # On an edge: that edge's count exactly.
        ((20, 50, 90, 100), EDGES, 1.0, 0.5),
        ((20, 50, 90, 100), EDGES, 2.5, 0.1),
        # Below the first edge: the first bucket runs from 0.
        ((20, 50, 90, 100), EDGES, 0.25, 1 - 10 / 100),
        # Past the last finite edge: the +Inf bucket counts as over.
        ((20, 50, 90, 100), EDGES, 30.0, 0.1),
        # Everyone fast: nothing over.
        ((100, 100, 100, 100), EDGES, 2.0, 0.0),
        # A count below the one before (counters scraped apart) is lifted to it.
        ((20, 50, 45, 100), EDGES, 2.5, 0.5),
    ],
)
def test_the_share_over_the_bound_is_interpolated_within_its_bucket(
    counts: tuple[float, ...], bounds: tuple[float, ...], bound: float, expected: float
) -> None:
    assert share_over(_h(counts, bounds), bound) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("counts", "bounds"),
    [
        ((0, 0, 0, 0), EDGES),  # no requests in the window: no evidence
        ((20, 50, 90), (0.5, 1.0, 2.5)),  # no +Inf bucket
        ((20, 50, 90, 100), (1.0, 0.5, 2.5, INF)),  # edges out of order
        ((20, -1, 90, 100), EDGES),
        ((20, math.nan, 90, 100), EDGES),
        ((20, 50, 100), EDGES),  # a count missing
        ((), ()),
    ],
)
def test_unreadable_or_empty_buckets_give_no_share(
    counts: tuple[float, ...], bounds: tuple[float, ...]
) -> None:
    assert share_over(_h(counts, bounds), 2.0) is None


TICK = 15.0
# Ten replicas of 10 rps at 50 rps: the load alone never sees a miss.
POLICY = ScalingPolicy(
    replica_capacity_rps=10.0,
    objective_unserved_share=0.001,
    ttft_target_seconds=2.0,
    objective_ttft_attainment=0.99,
).validate()
SLOW = (20.0, 50.0, 90.0, 100.0)  # 23 % over 2 s
FAST = (99.5, 99.8, 100.0, 100.0)  # none over


def _run(
    counts: tuple[float, ...] | None,
    policy: ScalingPolicy = POLICY,
    ticks: int = 240,
    histogram_age: float = 15.0,
) -> float:
    """The level after `ticks` ticks of 50 rps on 10 ready replicas, each with the histogram
    `counts` read `histogram_age` seconds old (None: no histogram)."""
    level = _observed(counts, policy, ticks, histogram_age).level
    assert level is not None
    return level


def _observed(
    counts: tuple[float, ...] | None,
    policy: ScalingPolicy = POLICY,
    ticks: int = 240,
    histogram_age: float = 15.0,
) -> ObjectiveState:
    state = ObjectiveState()
    for i in range(ticks + 1):
        now = i * TICK
        histogram = None if counts is None else _h(counts, at=now - histogram_age)
        observations = Observations(
            at=now,
            current_replicas=10,
            ready_replicas=10,
            load=Reading(50.0, now - 15.0),
            ttft_histogram=histogram,
        )
        state = observe(now, observations, policy, state)
    return state


START = math.log(0.84 / 0.16)
NO_ATTAINMENT = ScalingPolicy(10.0, objective_unserved_share=0.001, ttft_target_seconds=2.0)
NO_TARGET = ScalingPolicy(10.0, objective_unserved_share=0.001, objective_ttft_attainment=0.99)


@pytest.mark.parametrize(
    ("case", "counts", "policy", "age", "moves"),
    [
        ("TTFT misses raise the level", SLOW, POLICY, 15.0, "up"),
        ("quiet TTFT lowers it", FAST, POLICY, 15.0, "down"),
        ("missing TTFT moves nothing", None, POLICY, 15.0, "still"),
        ("stale TTFT moves nothing", SLOW, POLICY, 600.0, "still"),
        ("a window without requests moves nothing", (0.0, 0.0, 0.0, 0.0), POLICY, 15.0, "still"),
        # Without the latency objective the histogram is not read: the quiet load lowers it.
        ("no TTFT objective", SLOW, NO_ATTAINMENT, 15.0, "down"),
        ("no TTFT target", SLOW, NO_TARGET, 15.0, "down"),
    ],
)
def test_ttft_misses_move_the_level(
    case: str, counts: tuple[float, ...] | None, policy: ScalingPolicy, age: float, moves: str
) -> None:
    level = _run(counts, policy, histogram_age=age)
    if moves == "up":
        assert level > START + 1, case
    elif moves == "down":
        # A quiet hour lowers the level by the rate (0.5 logit units at the usual load).
        assert START - 0.6 < level < START - 0.4, case
    else:
        assert level == pytest.approx(START), case


def test_a_miss_share_at_the_allowed_share_holds_the_level() -> None:
    # 1 % over 2 s, 1 % allowed: the misses cost exactly what was declared.
    assert _run((99.0, 99.0, 99.0, 100.0)) == pytest.approx(START)


def test_load_misses_still_raise_the_level_while_the_ttft_is_missing() -> None:
    state = ObjectiveState()
    for i in range(41):
        now = i * TICK
        # 150 rps on 10 replicas of 10 rps: a third unserved.
        load = Reading(150.0, now - 15.0)
        observations = Observations(at=now, current_replicas=10, ready_replicas=10, load=load)
        state = observe(now, observations, POLICY, state)
    assert state.level is not None and state.level > START


@pytest.mark.parametrize("attainment", [0.0, 1.0, -0.5, 1.5])
def test_a_ttft_attainment_outside_0_1_is_a_policy_error(attainment: float) -> None:
    with pytest.raises(PolicyError, match="objective_ttft_attainment"):
        ScalingPolicy(10.0, objective_ttft_attainment=attainment).validate()


CHOSEN = OperatingPoint(forecast=0.5, floor=0.84, utilization=0.7)


@pytest.mark.parametrize(
    ("case", "counts", "policy", "age", "attainment"),
    [
        # 50 at 1 s and 90 at 2.5 s: 76.67 of 100 by 2 s, on every tick alike.
        ("slow", SLOW, POLICY, 15.0, (50 + 40 * (1.0 / 1.5)) / 100),
        ("fast", FAST, POLICY, 15.0, (99.8 + 0.2 * (1.0 / 1.5)) / 100),
        ("no histogram: none read", None, POLICY, 15.0, None),
        ("stale histogram: none read", SLOW, POLICY, 600.0, None),
        ("empty windows: none read", (0.0, 0.0, 0.0, 0.0), POLICY, 15.0, None),
    ],
)
def test_the_trailing_ttft_attainment_is_what_the_histograms_said(
    case: str, counts: tuple[float, ...] | None, policy: ScalingPolicy, age: float, attainment: float | None
) -> None:
    report = status(policy, _observed(counts, policy, histogram_age=age), CHOSEN, 10)
    assert report is not None
    assert report.ttft_attainment == 0.99, case
    if attainment is None:
        assert report.trailing_ttft_attainment is None, case
    else:
        assert report.trailing_ttft_attainment == pytest.approx(attainment), case


def test_without_a_latency_objective_no_attainment_is_reported() -> None:
    report = status(NO_TARGET, _observed(SLOW, NO_TARGET), CHOSEN, 10)
    assert report is not None
    assert (report.ttft_attainment, report.trailing_ttft_attainment) == (None, None)
    assert within_objective(NO_TARGET, _observed(SLOW, NO_TARGET))


@pytest.mark.parametrize(
    ("case", "counts", "max_replicas", "unreachable"),
    [
        ("slow TTFT at max_replicas", SLOW, 10, True),
        ("slow TTFT with room to scale", SLOW, 50, False),
        ("fast TTFT at max_replicas", FAST, 10, False),
        ("no TTFT reading at max_replicas", None, 10, False),
    ],
)
def test_a_latency_objective_unreachable_at_max_replicas_says_why(
    case: str, counts: tuple[float, ...] | None, max_replicas: int, unreachable: bool
) -> None:
    policy = ScalingPolicy(
        replica_capacity_rps=10.0,
        objective_unserved_share=0.001,
        ttft_target_seconds=2.0,
        objective_ttft_attainment=0.99,
        max_replicas=max_replicas,
    ).validate()
    report = status(policy, _observed(counts, policy), CHOSEN, 10)
    assert report is not None
    if unreachable:
        assert report.unreachable is not None, case
        assert "TTFT attainment 0.7667 is below the objective 0.99" in report.unreachable, case
        assert "max_replicas=10" in report.unreachable, case
        assert "unserved" not in report.unreachable, case  # the load missed nothing
    else:
        assert report.unreachable is None, case


@pytest.mark.parametrize(
    ("case", "counts", "met"),
    [
        ("slow TTFT is outside the objective", SLOW, False),
        ("fast TTFT is within it", FAST, True),
        ("no TTFT reading: nothing missed yet", None, True),
    ],
)
def test_within_objective_counts_the_latency_objective(
    case: str, counts: tuple[float, ...] | None, met: bool
) -> None:
    assert within_objective(POLICY, _observed(counts)) is met, case

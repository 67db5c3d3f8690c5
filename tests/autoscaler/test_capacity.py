"""Capacity learned online: which ticks give a pair, how pairs are counted, and the estimate as
tables of evidence (the split, too little evidence, noise on either side, drift-free grids)."""

from __future__ import annotations

import math

import pytest

from autoscaler.capacity import (
    BIN_RATIO,
    MIN_PAIRS_PER_SIDE,
    CapacityEvidence,
    CapacityPair,
    capacity_pair,
    estimate_capacity,
    record_pair,
)
from autoscaler.observations import Observations, Reading
from autoscaler.policy import ScalingPolicy

NOW = 50_000.0
POLICY = ScalingPolicy(replica_capacity_rps=None, queue_depth_target_per_replica=2.0, ttft_target_seconds=2.0)
NO_TARGETS = ScalingPolicy(replica_capacity_rps=None)


def _obs(
    load: float | None = 40.0,
    ready: int | None = 4,
    waiting: float | None = None,
    ttft: float | None = None,
    age: float = 0.0,
) -> Observations:
    def reading(value: float | None) -> Reading | None:
        return None if value is None else Reading(value, NOW - age)

    return Observations(
        at=NOW,
        current_replicas=4,
        ready_replicas=ready,
        load=reading(load),
        queue_depth=reading(waiting),
        ttft=reading(ttft),
    )


@pytest.mark.parametrize(
    ("observations", "policy", "expected"),
    [
        pytest.param(_obs(waiting=4.0), POLICY, (10.0, False), id="4 waiting on 4 ready is healthy"),
        pytest.param(_obs(waiting=12.0), POLICY, (10.0, True), id="12 waiting on 4 ready saturates"),
        pytest.param(_obs(waiting=0.0, ttft=3.0), POLICY, (10.0, True), id="a TTFT over its bound saturates"),
        pytest.param(_obs(ttft=1.0), POLICY, (10.0, False), id="TTFT alone within its bound is healthy"),
        pytest.param(_obs(ttft=3.0), NO_TARGETS, None, id="TTFT without a bound says nothing"),
        pytest.param(
            _obs(waiting=5.0), NO_TARGETS, (10.0, True), id="without a queue target 1 waiting per replica"
        ),
        pytest.param(_obs(waiting=4.0), NO_TARGETS, (10.0, False), id="1 waiting per replica is not over 1"),
        pytest.param(_obs(load=None, waiting=12.0), POLICY, None, id="no load, no pair"),
        pytest.param(_obs(ready=0, waiting=12.0), POLICY, None, id="no ready replica, no pair"),
        pytest.param(_obs(), POLICY, None, id="neither queue nor TTFT, no pair"),
        pytest.param(_obs(waiting=12.0, age=91.0), POLICY, None, id="stale readings give no pair"),
        pytest.param(_obs(load=math.nan, waiting=12.0), POLICY, None, id="a NaN load gives no pair"),
    ],
)
def test_capacity_pair(observations: Observations, policy: ScalingPolicy, expected: tuple | None) -> None:
    pair = capacity_pair(NOW, observations, policy)
    assert (None if pair is None else (pair.load_per_replica, pair.saturated)) == expected


def _evidence(*groups: tuple[float, bool, int]) -> CapacityEvidence:
    """(load per replica, saturated, how many pairs) per group, counted one tick each."""
    evidence = CapacityEvidence()
    at = 0.0
    for load, saturated, count in groups:
        for _ in range(count):
            at += 15.0
            evidence = record_pair(evidence, CapacityPair(load, saturated, at))
    return evidence


def _between(low: float, high: float) -> float:
    """The estimate for a split between pairs at `low` and at `high`: the geometric middle of their bins."""
    bins = (round(math.log(low) / math.log(BIN_RATIO)), round(math.log(high) / math.log(BIN_RATIO)))
    return BIN_RATIO ** (sum(bins) / 2)


N = MIN_PAIRS_PER_SIDE


@pytest.mark.parametrize(
    ("evidence", "expected"),
    [
        pytest.param(
            _evidence((2.0, False, N), (3.0, False, N), (4.0, False, N), (5.0, True, N), (6.0, True, N)),
            _between(4.0, 5.0),
            id="healthy up to 4, saturated from 5: about 4.5",
        ),
        pytest.param(_evidence((2.0, False, 5 * N)), None, id="only healthy pairs: no estimate"),
        pytest.param(_evidence((6.0, True, 5 * N)), None, id="only saturated pairs: no estimate"),
        pytest.param(
            _evidence((4.0, False, N), (5.0, True, N - 1)), None, id="one saturated pair short: no estimate"
        ),
        pytest.param(
            _evidence((4.0, False, N - 1), (5.0, True, N)), None, id="one healthy pair short: no estimate"
        ),
        pytest.param(
            _evidence((4.0, False, N), (5.0, True, N)), _between(4.0, 5.0), id="exactly enough on each side"
        ),
        pytest.param(
            _evidence((2.0, False, 10 * N), (2.0, True, 3), (4.0, False, 10 * N), (5.0, True, N)),
            _between(4.0, 5.0),
            id="a queue draining at low load does not pull the split down",
        ),
        pytest.param(
            _evidence((4.0, False, 10 * N), (5.0, True, N), (6.0, False, 3), (7.0, True, N)),
            _between(4.0, 5.0),
            id="a few healthy pairs above the split do not push it up",
        ),
        pytest.param(
            _evidence((800.0, False, N), (1000.0, False, N), (1200.0, True, N)),
            _between(1000.0, 1200.0),
            id="tokens per second: the grid is scale-free",
        ),
        pytest.param(
            _evidence((4.0, False, N), (4.0, True, N), (5.0, True, N)),
            _between(4.0, 5.0),
            id="a tie between splits takes the lower capacity",
        ),
    ],
)
def test_estimate_capacity(evidence: CapacityEvidence, expected: float | None) -> None:
    estimate = estimate_capacity(evidence)
    if expected is None:
        assert estimate is None
    else:
        assert estimate is not None
        assert estimate.per_replica == pytest.approx(expected)
        assert estimate.healthy_pairs >= N and estimate.saturated_pairs >= N


@pytest.mark.parametrize(
    ("pair", "counted"),
    [
        pytest.param(CapacityPair(5.0, True, 100.0), (0, 1), id="a new saturated pair is counted"),
        pytest.param(CapacityPair(5.0, False, 100.0), (1, 0), id="a new healthy pair is counted"),
        pytest.param(CapacityPair(5.0, True, 10.0), (0, 0), id="a reading already counted is not again"),
        pytest.param(CapacityPair(0.0, False, 100.0), (0, 0), id="an idle fleet says nothing"),
        pytest.param(CapacityPair(math.inf, True, 100.0), (0, 0), id="an infinite load is not counted"),
        pytest.param(None, (0, 0), id="no pair, nothing counted"),
    ],
)
def test_record_pair(pair: CapacityPair | None, counted: tuple[int, int]) -> None:
    before = CapacityEvidence(last_observed_at=10.0)
    assert record_pair(before, pair).pairs == counted
    assert before.pairs == (0, 0)  # evidence is replaced, never changed


def test_the_estimate_lands_within_a_bin_of_a_sharp_threshold() -> None:
    # A fleet saturating above 7.3 rps per replica, observed at loads from 3 to 12 rps.
    true = 7.3
    loads = [3.0 + 0.01 * i for i in range(900)]
    evidence = _evidence(*((load, load > true, 1) for load in loads))
    estimate = estimate_capacity(evidence)
    assert estimate is not None
    assert abs(estimate.per_replica / true - 1) <= BIN_RATIO - 1

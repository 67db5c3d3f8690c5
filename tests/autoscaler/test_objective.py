"""The objective's controller: quantiles chosen online from the misses the loop measures."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from autoscaler.decide import decide
from autoscaler.decision import DecisionState
from autoscaler.objective import (
    HIGHEST_FLOOR,
    HIGHEST_LEVEL,
    LOWEST_FLOOR,
    LOWEST_LEVEL,
    RATE_PER_HOUR,
    TOP_LEVEL,
    ObjectiveState,
    expected_shortfall,
    observe,
    operating_point,
    status,
)
from autoscaler.observations import Observations, Reading
from autoscaler.policy import (
    DEFAULT_FLOOR_QUANTILE,
    DEFAULT_FORECAST_QUANTILE,
    OBJECTIVE_QUANTILES,
    PolicyError,
    ScalingPolicy,
)
from forecasting.forecast import Forecast

TICK = 15.0
POLICY = ScalingPolicy(replica_capacity_rps=10.0, objective_unserved_share=0.01, max_replicas=50).validate()


def _tick(now: float, load: float | None, ready: int) -> Observations:
    reading = None if load is None else Reading(load, now - 15.0)
    return Observations(at=now, current_replicas=ready, ready_replicas=ready, load=reading)


def _run(
    state: ObjectiveState, ticks: int, load: float | None, ready: int, start: float = 0.0
) -> ObjectiveState:
    for i in range(ticks):
        state = observe(start + i * TICK, _tick(start + i * TICK, load, ready), POLICY, state)
    return state


def _floor(state: ObjectiveState) -> float:
    return operating_point(POLICY, state).floor


def test_without_an_objective_nothing_is_learned_and_the_defaults_are_read() -> None:
    policy = ScalingPolicy(replica_capacity_rps=10.0).validate()
    state = observe(0.0, _tick(0.0, 500.0, 1), policy, ObjectiveState())
    assert state == ObjectiveState()
    chosen = operating_point(policy, state)
    assert (chosen.forecast, chosen.floor) == (DEFAULT_FORECAST_QUANTILE, DEFAULT_FLOOR_QUANTILE)
    assert status(policy, state, chosen, 1) is None
    assert policy.forecast_quantiles == (0.5, 0.84, 0.9)


def test_the_first_tick_starts_at_the_default_floor() -> None:
    state = observe(0.0, _tick(0.0, 50.0, 10), POLICY, ObjectiveState())
    assert _floor(state) == DEFAULT_FLOOR_QUANTILE
    assert operating_point(POLICY, state).forecast == DEFAULT_FORECAST_QUANTILE


def test_quiet_hours_lower_the_quantiles_step_by_step_down_to_the_lowest() -> None:
    # 50 rps against 10 ready replicas of 10 rps: nothing unserved, for three days.
    state = _run(ObjectiveState(), 1, 50.0, 10)
    floors = []
    for hour in range(72):
        state = _run(state, 240, 50.0, 10, start=15.0 + hour * 3600)
        floors.append(_floor(state))
    assert floors == sorted(floors, reverse=True)
    assert floors[5] < DEFAULT_FLOOR_QUANTILE
    assert floors[-1] == LOWEST_FLOOR
    assert state.unserved == 0.0
    # Past the lowest quantile the quiet hours spend headroom, down to the lowest level.
    assert state.level == pytest.approx(LOWEST_LEVEL)
    assert operating_point(POLICY, state).utilization == pytest.approx(0.9)


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


HALF_TARGET = replace(POLICY, target_utilization=0.5)
FIXED_FLOOR = replace(POLICY, forecast_floor_quantile=0.84)


@pytest.mark.parametrize(
    ("case", "policy", "level", "utilization"),
    [
        ("before the first tick: the declared target", POLICY, None, 0.7),
        ("at the default floor", POLICY, _logit(0.84), 0.7),
        ("at the lowest floor quantile", POLICY, _logit(LOWEST_FLOOR), 0.7),
        ("one logit unit below it: half way to 0.9", POLICY, _logit(LOWEST_FLOOR) - 1.0, 0.8),
        ("at the lowest level: a third of the headroom kept", POLICY, LOWEST_LEVEL, 0.9),
        (
            "a target of 0.5 keeps a third of its 0.5",
            replace(POLICY, target_utilization=0.5),
            LOWEST_LEVEL,
            1 - 0.5 / 3,
        ),
        (
            "an expert's fixed floor leaves the target",
            replace(POLICY, forecast_floor_quantile=0.84),
            LOWEST_LEVEL,
            0.7,
        ),
        ("no objective: the target", replace(POLICY, objective_unserved_share=None), LOWEST_LEVEL, 0.7),
    ],
)
def test_the_utilization_rises_only_below_the_lowest_quantile(
    case: str, policy: ScalingPolicy, level: float | None, utilization: float
) -> None:
    chosen = operating_point(policy, ObjectiveState(level=level))
    assert chosen.utilization == pytest.approx(utilization), case


def test_the_load_ask_is_sized_at_the_chosen_utilization() -> None:
    # 80 rps of 10 rps replicas: 12 at 0.7 (80 / 7 = 11.4), 9 at 0.9 (80 / 9 = 8.9).
    hot = DecisionState(objective=ObjectiveState(level=LOWEST_LEVEL))
    for state, load_replicas, utilization in ((DecisionState(), 12, 0.7), (hot, 9, 0.9)):
        decision, _ = decide(0.0, _tick(0.0, 80.0, 10), None, POLICY, state)
        assert decision.recommendations["load"] == load_replicas
        assert decision.objective is not None
        assert decision.objective.utilization == pytest.approx(utilization)


def test_misses_take_the_headroom_back_before_any_quantile_moves() -> None:
    # At the lowest level, 10 % of 110 rps unserved for 40 minutes, the objective 1 %: each tick
    # raises the level by 0.5 * 15 / 3600 * (10 - 1.1) / 1.1 = 0.017, 2.7 logit units in all.
    hot = ObjectiveState(level=LOWEST_LEVEL, last_at=-TICK, ready=((-TICK, 10),))
    assert operating_point(POLICY, hot).utilization == pytest.approx(0.9)
    state = _run(hot, 160, 110.0, 10)
    assert operating_point(POLICY, state).utilization == pytest.approx(0.7)
    assert _floor(state) > LOWEST_FLOOR


def test_misses_raise_the_quantiles_up_to_the_highest() -> None:
    # 150 rps against 10 replicas of 10 rps: a third unserved, far above 1 %.
    state = _run(ObjectiveState(), 300, 150.0, 10)
    assert _floor(state) == HIGHEST_FLOOR
    chosen = operating_point(POLICY, state)
    assert chosen.forecast > DEFAULT_FORECAST_QUANTILE
    report = status(POLICY, state, chosen, 10)
    assert report is not None
    assert report.trailing_unserved_share == pytest.approx(50 / 150, rel=1e-6)
    assert report.unreachable is None  # 10 replicas, max is 50: more can still be asked for


def _hours_to_leave_the_highest_floor(state: ObjectiveState, start: float) -> int:
    """Quiet hours at the usual load (150 rps against 20 replicas of 10 rps) until the floor
    drops below 0.99: each lowers the level by `RATE_PER_HOUR`."""
    for hour in range(48):
        if _floor(state) < HIGHEST_FLOOR:
            return hour
        state = _run(state, 240, 150.0, 20, start=start + hour * 3600)
    raise AssertionError("the floor stayed at the highest quantile for two quiet days")


@pytest.mark.parametrize(
    ("case", "miss_ticks", "owed"),
    [
        # Each tick of a third unserved against the 1 % objective raises the level by
        # 0.5 * 15 / 3600 * (50 - 1.5) / 1.5 = 0.067 at a trailing mean of 150 rps.
        ("none", 0, 0.0),
        ("fifteen ticks: one logit unit, two quiet hours", 15, 15 * 0.5 * 15 / 3600 * 48.5 / 1.5),
        ("far more: counted up to the bound, eight quiet hours", 1000, HIGHEST_LEVEL - TOP_LEVEL),
    ],
)
def test_misses_above_the_highest_floor_are_paid_back_before_it_drops(
    case: str, miss_ticks: int, owed: float
) -> None:
    at_top = _run(ObjectiveState(level=TOP_LEVEL), 1, 150.0, 10)
    state = _run(at_top, miss_ticks, 150.0, 10, start=TICK)
    assert state.level is not None
    assert max(0.0, state.level - TOP_LEVEL) == pytest.approx(owed, abs=0.01), case
    # Read at the top all the same: the floor and the pre-warm quantile of a level at 0.99.
    assert operating_point(POLICY, state) == operating_point(POLICY, ObjectiveState(level=TOP_LEVEL))
    extra = _hours_to_leave_the_highest_floor(state, (miss_ticks + 1) * TICK) - (
        _hours_to_leave_the_highest_floor(at_top, TICK)
    )
    assert abs(extra - owed / RATE_PER_HOUR) <= 1, case


def test_at_max_replicas_misses_are_not_counted_above_the_top() -> None:
    # 1000 rps against the 50 replicas max_replicas allows: a higher quantile asks for nothing more.
    state = _run(ObjectiveState(level=TOP_LEVEL), 400, 1000.0, 50)
    assert state.level == pytest.approx(TOP_LEVEL)
    # What was counted below max_replicas is kept, not dropped, when the replicas reach it.
    owed = _run(ObjectiveState(level=TOP_LEVEL), 100, 150.0, 10)
    assert owed.level is not None and owed.level > TOP_LEVEL + 1
    after = _run(owed, 100, 1000.0, 50, start=100 * TICK)
    assert after.level == pytest.approx(owed.level)


def test_a_reading_is_judged_against_the_replicas_ready_in_the_minute_it_describes() -> None:
    # A steady 80 rps; ready went 5 -> 10 just now, the reading (a rate over the minute before
    # 45 s) was served by 5: 30 rps unserved for this 15 s tick.
    before = _run(ObjectiveState(), 4, 80.0, 5)
    after = observe(60.0, _tick(60.0, 80.0, 10), POLICY, before)
    assert after.unserved - before.unserved == pytest.approx(30.0 * TICK, rel=1e-3)
    # Ready went 10 -> 5 just now (a scale-down); the lagging reading of 80 rps was served by 10.
    before = _run(ObjectiveState(), 4, 80.0, 10)
    after = observe(60.0, _tick(60.0, 80.0, 5), POLICY, before)
    assert after.unserved == 0.0


def test_missing_or_stale_load_moves_nothing() -> None:
    state = _run(ObjectiveState(), 10, 150.0, 10)
    for load in (None, math.nan):
        after = _run(state, 100, load, 10, start=150.0)
        assert after.level == state.level
        assert (after.demand, after.unserved) == (state.demand, state.unserved)
    stale = Observations(at=1e5, current_replicas=10, ready_replicas=10, load=Reading(50.0, 0.0))
    assert observe(1e5, stale, POLICY, state).level == state.level


def test_without_a_capacity_known_nothing_is_measured_and_decide_goes_on() -> None:
    # A capacity to be learned (autoscaler.capacity) and not learned yet: the replicas' capacity
    # is unknown, so no shortfall can be measured; the queue decides meanwhile.
    learning = replace(POLICY, replica_capacity_rps=None, queue_depth_target_per_replica=5.0).validate()
    state = ObjectiveState()
    for i in range(20):
        state = observe(i * TICK, _tick(i * TICK, 150.0, 10), learning, state)
    assert (state.demand, state.unserved, state.level) == (0.0, 0.0, _logit_default())
    observations = replace(_tick(300.0, 150.0, 10), queue_depth=Reading(100.0, 290.0))
    decision, after = decide(300.0, observations, None, learning, DecisionState())
    assert decision.replicas == 20 and after.objective.unserved == 0.0


def _logit_default() -> float:
    return math.log(DEFAULT_FLOOR_QUANTILE / (1 - DEFAULT_FLOOR_QUANTILE))


def test_the_long_run_unserved_share_settles_at_the_objective() -> None:
    # A closed loop: the load takes a new level every minute (independent draws, as a per-minute
    # trace replays), the loop reads it every 15 s as a 60 s rate, so a window across two levels
    # hides the seconds of the higher one above capacity; the ready capacity is the chosen floor
    # quantile of the levels' distribution (what a forecast floor would provision).
    rng = np.random.default_rng(7)
    draws = rng.lognormal(np.log(100.0), 0.2, 200_000)
    capacity = dict(zip(OBJECTIVE_QUANTILES, np.quantile(draws, OBJECTIVE_QUANTILES), strict=True))
    policy = replace(POLICY, replica_capacity_rps=1.0, objective_unserved_share=0.01)
    state, demand, unserved = ObjectiveState(), 0.0, 0.0
    levels = rng.lognormal(np.log(100.0), 0.2, 30 * 1440 + 1)
    for i in range(4, 30 * 5760):  # 30 days of 15 s ticks
        now = i * TICK
        ready = int(capacity[operating_point(policy, state).floor])
        window = levels[np.arange(i - 3, i + 1) // 4]  # the last four 15 s stretches
        if i >= 5 * 5760:  # after five days of settling
            demand += window[-1]
            unserved += max(0.0, window[-1] - ready)
        reading = Reading(float(np.mean(window)), now)
        state = observe(now, Observations(now, ready, ready, load=reading), policy, state)
    # Met, and not by holding replicas for far fewer misses than declared: the spread a window
    # hides is bounded from above (half the step), so the loop's own count errs on the safe side.
    assert 0.005 < unserved / demand <= 0.011
    measured = state.unserved / state.demand
    assert unserved / demand <= measured < 2 * unserved / demand


def test_the_expected_shortfall_of_a_window() -> None:
    assert expected_shortfall(120.0, 100.0, 0.0) == 20.0
    assert expected_shortfall(80.0, 100.0, 0.0) == 0.0
    assert expected_shortfall(100.0, 100.0, 10.0) == pytest.approx(10 / math.sqrt(2 * math.pi))
    # Far below capacity the hidden seconds above it are negligible; far above, it is the mean.
    assert expected_shortfall(50.0, 100.0, 10.0) < 1e-6
    assert expected_shortfall(150.0, 100.0, 10.0) == pytest.approx(50.0, rel=1e-6)


def test_set_quantiles_are_expert_overrides() -> None:
    policy = replace(POLICY, forecast_quantile=0.7, forecast_floor_quantile=0.95)
    state = _run(ObjectiveState(), 300, 150.0, 10)
    chosen = operating_point(policy, state)
    assert (chosen.forecast, chosen.floor) == (0.7, 0.95)
    assert policy.forecast_quantiles == (0.5, 0.7, 0.9, 0.95)


def test_an_objective_unreachable_at_max_replicas_says_why() -> None:
    state = _run(ObjectiveState(), 40, 1000.0, 50)
    report = status(POLICY, state, operating_point(POLICY, state), 50)
    assert report is not None
    assert report.unreachable is not None
    assert "max_replicas=50" in report.unreachable
    assert "objective 0.01" in report.unreachable


@pytest.mark.parametrize("share", [0.0, 1.0, -0.1, math.nan])
def test_an_objective_outside_0_1_is_a_policy_error(share: float) -> None:
    with pytest.raises(PolicyError, match="objective_unserved_share"):
        ScalingPolicy(replica_capacity_rps=10.0, objective_unserved_share=share).validate()


def test_decide_carries_the_objective_in_its_state_and_reports_it() -> None:
    forecast = Forecast(0.0, 60.0, {q: np.full(30, 40.0 + 100 * q) for q in POLICY.forecast_quantiles})
    assert set(OBJECTIVE_QUANTILES) <= set(forecast.quantiles)
    state = DecisionState()
    for i in range(6 * 240):
        now = i * TICK
        decision, state = decide(now, _tick(now, 50.0, 10), forecast, POLICY, state)
    assert decision.objective is not None
    assert decision.objective.unserved_share == 0.01
    assert decision.objective.trailing_unserved_share == 0.0
    assert decision.objective.floor_quantile < DEFAULT_FLOOR_QUANTILE  # six hours without a miss
    assert state.objective.level is not None

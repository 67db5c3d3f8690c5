"""Scale to zero and back: the verdict on the 0-or-1 boundary as a table, and decide() applying it
(the last replica goes only on live quiet load and a quiet forecast, comes back a lead ahead)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from autoscaler.decide import decide
from autoscaler.decision import DecisionState, Reason
from autoscaler.objective import ObjectiveState, within_objective
from autoscaler.observations import Observations, Reading
from autoscaler.policy import PolicyError, ScalingPolicy
from autoscaler.scale_to_zero import Zero, activation_rps, scale_to_zero
from forecasting.forecast import Forecast

NOW = 100_000.0
# 10 rps per replica at the target; activation 0.05 -> 0.5 rps; no scale-down window, so the
# verdict is what the count does.
POLICY = replace(
    ScalingPolicy(
        replica_capacity_rps=10.0, target_utilization=1.0, min_replicas=0, activation_utilization=0.05
    ),
    default_cold_start_seconds=120.0,
    decision_delay_seconds=30.0,
    objective_unserved_share=None,
    panic_threshold=100.0,
)
POLICY = replace(POLICY, scale_down=replace(POLICY.scale_down, stabilization_window_seconds=0.0)).validate()
LEAD = 150.0
QUANTILE = 0.84


def forecast_with(rate_at: dict[float, float], base: float = 0.0) -> Forecast:
    """15 s steps from NOW over 30 minutes, `base` everywhere but `rate_at` (seconds after NOW)."""
    path = np.full(120, base)
    for offset, rate in rate_at.items():
        path[int(offset // 15)] = rate
    return Forecast(start=NOW, step_seconds=15.0, quantiles={QUANTILE: path, 0.5: path / 2})


def observed(load: float | None, current: int, age: float = 5.0) -> Observations:
    reading = None if load is None else Reading(load, NOW - age)
    return Observations(at=NOW, current_replicas=current, ready_replicas=current, load=reading)


QUIET = forecast_with({})


@pytest.mark.parametrize(
    ("load", "forecast", "current", "expected"),
    [
        pytest.param(0.0, QUIET, 1, Zero.IDLE, id="quiet load and forecast: the last replica may go"),
        pytest.param(0.4, forecast_with({}, base=0.4), 1, Zero.IDLE, id="noise under the threshold is none"),
        pytest.param(0.6, QUIET, 1, Zero.DEMAND, id="load above the threshold keeps one"),
        pytest.param(
            0.0, forecast_with({LEAD + 60: 3.0}), 1, Zero.EXPECTED, id="demand within two leads keeps one"
        ),
        pytest.param(
            0.0, forecast_with({2 * LEAD + 30: 3.0}), 1, Zero.IDLE, id="demand beyond two leads: may go"
        ),
        pytest.param(
            0.0, forecast_with({LEAD + 60: 3.0}), 0, Zero.IDLE, id="at zero, demand past one lead: wait"
        ),
        pytest.param(
            0.0,
            forecast_with({LEAD - 15: 3.0}),
            0,
            Zero.EXPECTED,
            id="at zero, demand within a lead: come back",
        ),
        pytest.param(0.6, QUIET, 0, Zero.DEMAND, id="at zero, load above the threshold: come back"),
        pytest.param(0.2, QUIET, 0, Zero.IDLE, id="at zero, noise wakes nothing"),
        pytest.param(None, QUIET, 1, Zero.HOLD, id="missing load never takes the last replica"),
        pytest.param(0.0, None, 1, Zero.HOLD, id="no forecast never takes the last replica"),
        pytest.param(None, QUIET, 0, Zero.HOLD, id="at zero, missing load brings none back"),
        pytest.param(0.0, None, 0, Zero.IDLE, id="at zero, no forecast: the live load still says idle"),
        pytest.param(
            None,
            forecast_with({60: 3.0}),
            0,
            Zero.EXPECTED,
            id="at zero, the forecast pre-warms without load",
        ),
    ],
)
def test_the_verdict_on_the_zero_boundary(load, forecast, current, expected):
    assert scale_to_zero(NOW, observed(load, current), forecast, POLICY, QUANTILE, current) is expected


def test_over_the_objective_the_last_replica_stays_and_zero_stays_zero():
    assert scale_to_zero(NOW, observed(0.0, 1), QUIET, POLICY, QUANTILE, 1, False) is Zero.OVER_OBJECTIVE
    assert scale_to_zero(NOW, observed(0.0, 0), QUIET, POLICY, QUANTILE, 0, False) is Zero.IDLE


@pytest.mark.parametrize(
    ("objective", "demand", "unserved", "expected"),
    [
        pytest.param(0.001, 265.0, 1.0, False, id="one miss in 265 requests is over 0.1 %"),
        pytest.param(0.01, 265.0, 1.0, True, id="and within 1 %"),
        pytest.param(0.001, 0.0, 0.0, True, id="no demand yet: nothing missed"),
        pytest.param(None, 265.0, 100.0, True, id="no objective: no gate"),
    ],
)
def test_within_objective(objective, demand, unserved, expected):
    policy = replace(POLICY, objective_unserved_share=objective).validate()
    state = ObjectiveState(demand=demand, unserved=unserved, seconds=86400.0)
    assert within_objective(policy, state) is expected


def test_decide_keeps_the_last_replica_while_over_the_objective():
    policy = replace(POLICY, objective_unserved_share=0.001).validate()
    missed = DecisionState(objective=ObjectiveState(level=3.0, demand=265.0, unserved=1.0, seconds=86400.0))
    decision, _ = decide(NOW, observed(0.0, 1), QUIET, policy, missed)
    assert (decision.replicas, decision.reason) == (1, Reason.FORECAST)


def test_stale_load_counts_as_missing():
    stale = observed(0.0, 1, age=POLICY.stale_after_seconds + 1)
    assert scale_to_zero(NOW, stale, QUIET, POLICY, QUANTILE, 1) is Zero.HOLD


def test_a_forecast_that_does_not_cover_the_window_is_missing():
    short = Forecast(start=NOW, step_seconds=15.0, quantiles={QUANTILE: np.zeros(2)})
    late = Forecast(start=NOW + 10 * LEAD, step_seconds=15.0, quantiles={QUANTILE: np.zeros(4)})
    assert scale_to_zero(NOW, observed(0.0, 1), late, POLICY, QUANTILE, 1) is Zero.HOLD
    # One that covers part of the window reads what it covers.
    assert scale_to_zero(NOW, observed(0.0, 1), short, POLICY, QUANTILE, 1) is Zero.IDLE


def test_the_rule_is_off_above_zero_minimum():
    policy = replace(POLICY, min_replicas=1).validate()
    assert scale_to_zero(NOW, observed(0.0, 1), QUIET, policy, QUANTILE, 1) is None


@pytest.mark.parametrize(
    ("capacity", "utilization", "activation", "expected"),
    [(10.0, 1.0, 0.05, 0.5), (10.0, 0.7, 0.1, 0.7), (None, 0.7, 0.1, 0.0), (10.0, 1.0, 0.0, 0.0)],
)
def test_the_threshold_is_a_share_of_one_replicas_target_load(capacity, utilization, activation, expected):
    policy = ScalingPolicy(
        replica_capacity_rps=capacity,
        target_utilization=utilization,
        min_replicas=0,
        activation_utilization=activation,
    )
    assert activation_rps(policy) == pytest.approx(expected)


@pytest.mark.parametrize("bad", [-0.1, 1.0, float("nan")])
def test_a_bad_activation_share_names_the_field(bad):
    with pytest.raises(PolicyError, match=r"activation_utilization=.* allowed \[0, 1\)"):
        replace(POLICY, activation_utilization=bad).validate()


def run(load: float | None, forecast: Forecast | None, current: int, policy: ScalingPolicy = POLICY):
    decision, _ = decide(NOW, observed(load, current), forecast, policy, DecisionState())
    return decision.replicas, decision.reason


@pytest.mark.parametrize(
    ("load", "forecast", "current", "expected"),
    [
        pytest.param(
            0.2, forecast_with({}, base=0.3), 1, (0, Reason.IDLE), id="noise: the last replica goes"
        ),
        pytest.param(
            0.0, forecast_with({LEAD + 60: 3.0}), 1, (1, Reason.FORECAST), id="demand in two leads holds it"
        ),
        pytest.param(None, QUIET, 1, (1, Reason.HELD_STALE), id="missing load holds it"),
        pytest.param(0.0, None, 1, (1, Reason.HELD_STALE), id="no forecast holds it"),
        pytest.param(0.2, QUIET, 0, (0, Reason.IDLE), id="noise at zero wakes nothing"),
        pytest.param(0.0, forecast_with({60: 0.4 * 2}), 0, (1, Reason.FORECAST), id="pre-warm from zero"),
        pytest.param(0.9, QUIET, 0, (1, Reason.LOAD), id="demand at zero"),
        pytest.param(25.0, QUIET, 1, (3, Reason.LOAD), id="above one the rule says nothing"),
    ],
)
def test_decide_applies_the_verdict(load, forecast, current, expected):
    assert run(load, forecast, current) == expected


def test_with_min_replicas_one_nothing_changes():
    policy = replace(POLICY, min_replicas=1).validate()
    assert run(0.0, QUIET, 1, policy) == (1, Reason.MIN)

"""Cost-matched comparison: interpolation on a baseline's swept curve, and what lies outside it."""

import math

import pytest

from simulator.frontier import (
    VIOLATION_FLOOR,
    FrontierPoint,
    at_violation,
    compare,
    hours_at_violation,
    parse_sweep_name,
    sweep_name,
    violation_at_hours,
)

HPA = [
    FrontierPoint("hpa", 0.5, 0.001, 110.0),
    FrontierPoint("hpa", 0.6, 0.01, 100.0),
    FrontierPoint("hpa", 0.7, 0.1, 90.0),
]


@pytest.mark.parametrize(
    ("violation", "hours"),
    [
        pytest.param(0.001, 110.0, id="on a point"),
        pytest.param(math.sqrt(0.001 * 0.01), 105.0, id="halfway in log"),
        pytest.param(0.05, 100.0 - 10.0 * math.log(5) / math.log(10), id="second segment"),
        pytest.param(0.0001, None, id="below the sweep"),
        pytest.param(0.2, None, id="above the sweep"),
    ],
)
def test_hours_at_violation(violation, hours):
    found = hours_at_violation(HPA, violation)
    assert found == (None if hours is None else pytest.approx(hours))


@pytest.mark.parametrize(
    ("hours", "violation"),
    [
        pytest.param(105.0, math.sqrt(0.001 * 0.01), id="halfway"),
        pytest.param(90.0, 0.1, id="on a point"),
        pytest.param(80.0, None, id="cheaper than the sweep"),
    ],
)
def test_violation_at_hours(hours, violation):
    found = violation_at_hours(HPA, hours)
    assert found == (None if violation is None else pytest.approx(violation))


def test_zero_violation_lies_on_the_floor():
    curve = [FrontierPoint("hpa", 0.5, 0.0, 120.0), FrontierPoint("hpa", 0.6, 0.001, 100.0)]
    assert hours_at_violation(curve, VIOLATION_FLOOR) == pytest.approx(120.0)
    assert hours_at_violation(curve, 0.0) == pytest.approx(120.0)


def test_compare_reports_the_baselines_extra_hours_and_violation_ratio():
    comparison = compare(FrontierPoint("predictive", 0.7, math.sqrt(0.001 * 0.01), 100.0), HPA)
    assert comparison.baseline_extra_hours == pytest.approx(0.05)
    assert comparison.violation_vs_baseline == pytest.approx(math.sqrt(0.001 * 0.01) / 0.01)
    outside = compare(FrontierPoint("predictive", 0.7, 0.5, 50.0), HPA)
    assert (outside.violation_inside, outside.hours_inside) == (False, False)
    assert outside.baseline_extra_hours is None and outside.violation_vs_baseline is None


def test_sweep_names_round_trip():
    assert parse_sweep_name(sweep_name("hpa", 0.55)) == ("hpa", 0.55)
    assert parse_sweep_name("oracle") is None


def test_at_violation_interpolates_or_says_what_the_curve_reached():
    inside = at_violation(HPA, math.sqrt(0.001 * 0.01))
    assert inside.hours == pytest.approx(105.0)
    assert (inside.cheapest_meeting_hours, inside.cheapest_meeting_knob) == (110.0, 0.5)
    assert (inside.least_violation, inside.hours_at_least_violation) == (0.001, 110.0)
    # 99.99 % is more than the sweep reaches: no figure at the target, and none meets it.
    beyond = at_violation(HPA, 0.0001)
    assert beyond.hours is None and beyond.cheapest_meeting_hours is None
    assert beyond.least_violation == 0.001
    # Every point meets 80 %: outside the sweep, but its cheapest point is an upper bound.
    easy = at_violation(HPA, 0.2)
    assert easy.hours is None and easy.cheapest_meeting_hours == 90.0

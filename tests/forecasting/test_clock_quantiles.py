"""clock_quantiles: the same clock time on the last days, relative to the hour before it, times
the last hour's median (the contract tests in test_models.py cover it with every other model)."""

from __future__ import annotations

import numpy as np
import pytest

from forecasting import MODELS, LoadSeries
from forecasting.clock_quantiles import clock_ratios

DAY = 1440
HORIZON = 10


def _predict(values: np.ndarray, quantiles: tuple[float, ...] = (0.5, 0.9)):
    history = LoadSeries(0.0, 60.0, values)
    return MODELS["clock_quantiles"]().fit(history).predict(history, HORIZON, quantiles)


def _days_with_burst(days: int, burst_days: int, level: float = 50.0, burst: float = 200.0) -> np.ndarray:
    """`days` days at `level`, the last `burst_days` of them (before today) with `burst` from 5 to
    8 minutes after the clock time at which the history ends; today's last hour at `level`."""
    values = np.full(days * DAY, level)
    for back in range(1, burst_days + 1):
        origin = days * DAY - back * DAY
        values[origin + 5 : origin + 8] = burst
    return values


def test_a_burst_at_this_clock_time_on_every_day_raises_the_paths_for_its_minutes_only() -> None:
    forecast = _predict(_days_with_burst(days=4, burst_days=3))
    for q in (0.5, 0.9):
        path = forecast.quantiles[q]
        # The burst's minutes (5-7) and one either side (the neighbour steps) are raised to 4x.
        np.testing.assert_allclose(path[6], 200.0)
        np.testing.assert_allclose(path[:4], 50.0)
        np.testing.assert_allclose(path[9:], 50.0)
    assert forecast.model == "clock_quantiles"
    assert forecast.trailing_error is None


@pytest.mark.parametrize(
    ("burst_days", "median_step_6", "upper_step_6"),
    [
        pytest.param(0, 50.0, 50.0, id="no burst on any day: flat at the level"),
        pytest.param(1, 50.0, 200.0, id="one day of three: only the upper quantile sees it"),
        pytest.param(3, 200.0, 200.0, id="every day: the median sees it too"),
    ],
)
def test_how_many_days_burst_sets_which_quantiles_rise(
    burst_days: int, median_step_6: float, upper_step_6: float
) -> None:
    forecast = _predict(_days_with_burst(days=4, burst_days=burst_days), quantiles=(0.5, 0.95))
    assert forecast.quantiles[0.5][6] == pytest.approx(median_step_6)
    assert forecast.quantiles[0.95][6] == pytest.approx(upper_step_6)


def test_the_ratios_scale_with_todays_level() -> None:
    values = _days_with_burst(days=4, burst_days=3)
    values[-60:] = 100.0  # today's last hour at twice the level of the days before
    np.testing.assert_allclose(_predict(values).quantiles[0.5][6], 400.0)


def test_under_two_days_it_is_recent_quantiles() -> None:
    values = np.linspace(40.0, 100.0, DAY + 30)
    history = LoadSeries(0.0, 60.0, values)
    clock = _predict(values)
    recent = MODELS["recent_quantiles"]().fit(history).predict(history, HORIZON, (0.5, 0.9))
    for q in (0.5, 0.9):
        np.testing.assert_array_equal(clock.quantiles[q], recent.quantiles[q])
    assert clock.model == "clock_quantiles"


def test_days_without_data_before_the_clock_time_are_skipped() -> None:
    values = _days_with_burst(days=4, burst_days=3)
    values[DAY - 60 : DAY] = np.nan  # three days back: the hour before is unknown
    now = np.array([len(values)])
    ratios, days = clock_ratios(values, 60.0, now, HORIZON)
    assert days.tolist() == [2] and np.isfinite(ratios[0]).any(axis=1).sum() == 2 * 3
    values[2 * DAY - 60 : 2 * DAY] = 0.0  # two days back: an idle hour gives no ratio either
    assert clock_ratios(values, 60.0, now, HORIZON)[1].tolist() == [1]


def test_nothing_known_is_missing_not_zero() -> None:
    assert np.isnan(_predict(np.full(3 * DAY, np.nan)).quantiles[0.9]).all()

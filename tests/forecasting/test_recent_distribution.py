"""recent_quantiles: the last hour's quantiles, shifted by the change the same hours showed on
previous days (the contract tests in test_models.py cover it with every other model)."""

from __future__ import annotations

import numpy as np
import pytest

from forecasting import MODELS, LoadSeries
from forecasting.recent_distribution import complete_quantiles, daily_shift, maturity

DAY = 1440


def _predict(values: np.ndarray, step_seconds: float = 60.0, quantiles: tuple[float, ...] = (0.5, 0.9)):
    history = LoadSeries(0.0, step_seconds, values)
    return MODELS["recent_quantiles"]().fit(history).predict(history, 5, quantiles)


def test_paths_are_the_last_hours_quantiles_flat_over_the_horizon() -> None:
    older = np.full(60, 1000.0)  # more than an hour back: not read
    last_hour = np.linspace(40.0, 100.0, 61)[1:]
    forecast = _predict(np.concatenate((older, last_hour)))
    np.testing.assert_allclose(forecast.quantiles[0.5], np.full(5, np.quantile(last_hour, 0.5)))
    np.testing.assert_allclose(forecast.quantiles[0.9], np.full(5, np.quantile(last_hour, 0.9)))
    assert forecast.model == "recent_quantiles"
    assert forecast.trailing_error is None


def _day_with(before: float, after: float, today: float) -> np.ndarray:
    """One day whose hour before the clock time averages `before` and the 10 minutes after
    `after`, then today's hour at `today`: the day ends where the forecast starts."""
    values = np.full(DAY + 60, today)
    values[:60] = before  # day one: the hour before the clock time
    values[60:70] = after  # day one: the 10 minutes after it
    values[70:DAY] = before
    return values


@pytest.mark.parametrize(
    ("before", "after", "shift"),
    [
        pytest.param(50.0, 60.0, 1.2, id="a 20 percent rise on the day before"),
        pytest.param(50.0, 40.0, 0.8, id="a 20 percent fall"),
        pytest.param(50.0, 500.0, 1.3, id="a tenfold rise is bounded to 30 percent"),
        pytest.param(50.0, 0.0, 1.0, id="an empty day counts as no shift"),
    ],
)
def test_daily_shift(before: float, after: float, shift: float) -> None:
    values = _day_with(before, after, today=10.0)
    assert daily_shift(values, 60.0, np.array([len(values)]))[0] == pytest.approx(shift)
    np.testing.assert_allclose(_predict(values).quantiles[0.5], np.full(5, 10.0 * shift))


def test_daily_shift_sums_over_the_days_that_have_data() -> None:
    two_days = np.concatenate((_day_with(50.0, 60.0, 0.0)[:DAY], _day_with(100.0, 100.0, 10.0)))
    # Day two back: 50 -> 60; one back: 100 -> 100; (60 + 100) / (50 + 100).
    assert daily_shift(two_days, 60.0, np.array([len(two_days)]))[0] == pytest.approx(160.0 / 150.0)
    gappy = two_days.copy()
    gappy[DAY + 60 : DAY + 70] = np.nan  # yesterday's 10 minutes unknown: only day two counts
    assert daily_shift(gappy, 60.0, np.array([len(gappy)]))[0] == pytest.approx(1.2)


def test_an_hour_with_no_known_value_falls_back_to_the_last_known_one() -> None:
    values = np.concatenate(([30.0, 42.0], np.full(60, np.nan)))
    np.testing.assert_array_equal(_predict(values).quantiles[0.9], np.full(5, 42.0))


def test_ten_minute_steps_read_six_steps_as_the_hour() -> None:
    values = np.array([900.0, 900.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0])
    np.testing.assert_allclose(_predict(values, 600.0).quantiles[0.5], np.full(5, 35.0))


@pytest.mark.parametrize(
    ("values", "step_seconds", "expected"),
    [
        pytest.param(np.full(20, 5.0), 60.0, 1 / 3, id="20 minutes of an hour"),
        pytest.param(np.full(60, 5.0), 60.0, 1.0, id="a whole hour"),
        pytest.param(np.full(500, 5.0), 60.0, 1.0, id="more than an hour counts as one"),
        pytest.param(
            np.concatenate((np.full(40, np.nan), np.full(20, 5.0))),
            60.0,
            1 / 3,
            id="unknown steps before the first value do not count",
        ),
        pytest.param(np.array([5.0] + [np.nan] * 29), 60.0, 0.5, id="gaps after the first value count"),
        pytest.param(np.full(120, 5.0), 15.0, 0.5, id="15 s steps: 30 minutes"),
        pytest.param(np.full(5, np.nan), 60.0, 0.0, id="nothing known"),
        pytest.param(np.array([]), 60.0, 0.0, id="no history"),
    ],
)
def test_maturity(values: np.ndarray, step_seconds: float, expected: float) -> None:
    assert maturity(values, step_seconds) == pytest.approx(expected)


@pytest.mark.parametrize("name", ["recent_quantiles", "clock_quantiles", "objective_choice"])
def test_a_sample_path_forecast_reports_how_much_of_its_hour_it_has_seen(name: str) -> None:
    young, grown = LoadSeries(0.0, 60.0, np.full(15, 8.0)), LoadSeries(0.0, 60.0, np.full(90, 8.0))
    model = MODELS[name]()
    assert model.fit(young).predict(young, 5, (0.5,)).maturity == pytest.approx(0.25)
    assert model.fit(grown).predict(grown, 5, (0.5,)).maturity == 1.0


def test_nothing_known_is_missing_not_zero() -> None:
    assert np.isnan(_predict(np.full(5, np.nan)).quantiles[0.9]).all()


@pytest.mark.parametrize(
    ("rows", "quantiles"),
    [
        pytest.param([[5.0]], (0.0, 0.5, 1.0), id="one value"),
        pytest.param([[1.0, 2.0]], (0.5,), id="halfway between two"),
        pytest.param([[3.0, 1.0, 2.0, 2.0, 9.0]], (0.1, 0.84, 0.99), id="unsorted, with a tie"),
        pytest.param([[0.1, 0.2, 0.3] * 20, [7.0] * 60], (0.3, 0.5, 0.7, 0.9), id="two rows, one constant"),
        pytest.param(
            np.random.default_rng(3).gamma(2.0, 50.0, (4, 60)),
            (0.1, 0.2, 0.5, 0.84, 0.95, 0.98),
            id="random hour",
        ),
    ],
)
def test_complete_quantiles_are_numpys_linear_quantiles_to_the_last_bit(rows, quantiles):
    rows = np.asarray(rows, dtype=float)
    assert np.array_equal(complete_quantiles(rows, quantiles), np.quantile(rows, quantiles, axis=1))

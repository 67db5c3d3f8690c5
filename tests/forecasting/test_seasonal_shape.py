"""Holt-Winters and MSTL: the learned shape, its use as a change on the current level, fallbacks."""

from __future__ import annotations

import numpy as np
import pytest

from forecasting import MODELS, LoadSeries
from forecasting.point_paths import shape_change
from forecasting.seasonal_shape import holt_winters_seasonal, learn_profile, mstl_seasonal

DAY_MINUTES = 1440
SHAPE_MODELS = ["holt_winters", "mstl"]


def clean_cycle(days: float, start_minute: int = 0, noise_rps: float = 0.0) -> LoadSeries:
    """50 + 40 sin(2 pi t / day) rps at 1-minute steps, peaking 6 hours after a day starts."""
    minutes = start_minute + np.arange(int(days * DAY_MINUTES))
    values = 50 + 40 * np.sin(2 * np.pi * minutes / DAY_MINUTES)
    values += np.random.default_rng(5).normal(0, noise_rps, len(values)) if noise_rps else 0.0
    return LoadSeries(1_000_000.0, 60.0, values)


def test_shape_change_adds_the_shape_change_over_the_lead_to_the_level() -> None:
    values = np.full(20, 100.0)
    # A shape rising 1 rps per minute: from the last step's centre (19.5 min) to lead h's
    # centre (20.5 + h min) it rises 1 + h rps.
    paths = shape_change(
        values, np.array([20]), 3, shape_at=lambda s: s / 60, step_seconds=60.0, halflife_steps=0
    )
    np.testing.assert_allclose(paths[0], [101, 102, 103])


@pytest.mark.parametrize(
    "seasonal_fit",
    [pytest.param(holt_winters_seasonal, id="holt-winters"), pytest.param(mstl_seasonal, id="mstl")],
)
@pytest.mark.parametrize("start_minute", [pytest.param(0, id="day-aligned"), pytest.param(500, id="mid-day")])
def test_learned_profile_has_the_amplitude_and_phase_of_the_cycle(seasonal_fit, start_minute: int) -> None:
    history = clean_cycle(4, start_minute, noise_rps=3.0)
    profile = learn_profile(history, seasonal_fit)
    assert profile is not None
    seconds = np.arange(DAY_MINUTES) * 60.0
    shape = profile.at(seconds)
    # Peak-to-trough of the sine is 80 rps; the peak is at minute 360 of the day, i.e. at
    # (360 - start_minute) mod 1440 minutes since the series start.
    assert 70 < shape.max() - shape.min() < 90
    peak = int(np.argmax(shape))
    expected = (360 - start_minute) % DAY_MINUTES
    assert min(abs(peak - expected), DAY_MINUTES - abs(peak - expected)) <= 30


@pytest.mark.parametrize("name", SHAPE_MODELS)
@pytest.mark.parametrize(
    "days", [pytest.param(4, id="four days"), pytest.param(16, id="sixteen days, longer than the lookback")]
)
def test_shape_models_follow_the_ramp_that_last_value_misses(name: str, days: int) -> None:
    # The series ends at minute 0 of a day, where the sine rises fastest: +5.2 rps in 30 minutes.
    history = clean_cycle(days)
    forecast = MODELS[name]().fit(history).predict(history, 30, (0.5, 0.9))
    minutes = days * DAY_MINUTES + np.arange(30)
    truth = 50 + 40 * np.sin(2 * np.pi * minutes / DAY_MINUTES)
    assert forecast.model == name
    assert np.max(np.abs(forecast.path(0.5) - truth)) < 2.0
    assert abs(truth[-1] - history.values[-1]) > 5.0


@pytest.mark.parametrize("name", SHAPE_MODELS)
@pytest.mark.parametrize(
    ("history", "fitted_as"),
    [
        pytest.param(clean_cycle(1), ":last_value", id="one day is under two periods"),
        pytest.param(LoadSeries(0.0, 60.0, np.linspace(10, 20, 10)), ":last_value", id="ten points"),
        pytest.param(
            LoadSeries(0.0, 60.0, np.where(np.arange(4 * DAY_MINUTES) % 1800 < 1000, np.nan, 5.0)),
            ":last_value",
            id="mostly missing",
        ),
        pytest.param(LoadSeries(0.0, 60.0, np.full(3 * DAY_MINUTES, 7.0)), "", id="flat load still fits"),
    ],
)
def test_shape_models_fall_back_to_last_value_when_the_history_cannot_fit(
    name: str, history: LoadSeries, fitted_as: str
) -> None:
    forecast = MODELS[name]().fit(history).predict(history, 5, (0.5, 0.9))
    assert forecast.model == name + fitted_as
    assert not np.isnan(forecast.path(0.9)).any()


@pytest.mark.parametrize(
    ("days", "profile_steps"),
    [
        pytest.param(10, 96, id="ten days: daily profile on the 15-minute grid"),
        pytest.param(16, 672, id="over two weeks: weekly profile"),
    ],
)
def test_mstl_adds_the_weekly_period_only_with_more_than_two_weeks(days: int, profile_steps: int) -> None:
    profile = learn_profile(clean_cycle(days, noise_rps=1.0), mstl_seasonal)
    assert profile is not None
    assert len(profile.profile_rps) == profile_steps


@pytest.mark.parametrize("name", SHAPE_MODELS)
def test_predict_reads_a_recent_window_without_shifting_the_shape(name: str) -> None:
    # Sixteen days is more than predict reads (8 days + horizon): it drops whole weeks from the
    # front so that the profile, indexed from the series start, keeps its phase.
    history = clean_cycle(16.3, noise_rps=2.0)
    fitted = MODELS[name]().fit(history)
    every_value = fitted.point_paths(history.values, np.array([len(history.values)]), 30)
    expected = fitted.residuals.paths(every_value, (0.5,))[0.5][0]
    np.testing.assert_allclose(fitted.predict(history, 30, (0.5,)).path(0.5), expected, rtol=1e-9)

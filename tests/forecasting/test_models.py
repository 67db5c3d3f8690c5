"""Contract tests over every registered model, plus the selector and the point paths."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from forecasting import MODELS, Forecaster, LoadSeries, SelectBest, backtest, point_paths
from forecasting.point_models import PointPaths
from forecasting.point_paths import filled_at, forward_fill, seasonal_change, seasonal_naive

QUANTILES = (0.5, 0.9, 0.99)
DAY = 1440


def daily_cycle(days: float, seed: int = 1, step_seconds: float = 60.0) -> LoadSeries:
    rng = np.random.default_rng(seed)
    steps = int(days * 86400 / step_seconds)
    minutes = np.arange(steps) * step_seconds / 60
    values = 50 + 40 * np.sin(2 * np.pi * minutes / DAY) + rng.normal(0, 3, steps)
    return LoadSeries(1_000_000.0, step_seconds, np.maximum(values, 0))


def with_gaps(series: LoadSeries, share: float, seed: int = 2) -> LoadSeries:
    values = series.values.copy()
    values[np.random.default_rng(seed).random(len(values)) < share] = np.nan
    return LoadSeries(series.start, series.step_seconds, values)


def with_outage(series: LoadSeries, first_day: float, last_day: float) -> LoadSeries:
    values = series.values.copy()
    values[int(first_day * DAY) : int(last_day * DAY)] = np.nan
    return LoadSeries(series.start, series.step_seconds, values)


HISTORIES = [
    pytest.param(daily_cycle(4), id="four days of a daily cycle"),
    pytest.param(LoadSeries(0.0, 60.0, np.linspace(10, 20, 10)), id="ten points of history"),
    pytest.param(with_gaps(daily_cycle(4), 0.5), id="half the steps missing"),
    pytest.param(daily_cycle(9, step_seconds=600.0), id="nine days at ten-minute steps"),
    pytest.param(LoadSeries(0.0, 60.0, np.array([np.nan, np.nan, 5.0])), id="one known value"),
    # 44 % missing overall, but the whole of LightGBM's week-long training window.
    pytest.param(with_outage(daily_cycle(16), 7, 14), id="a week-long outage two days back"),
    pytest.param(with_outage(daily_cycle(16), 7, 16), id="nothing known for the last nine days"),
]


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("history", HISTORIES)
def test_every_model_returns_ordered_finite_quantiles_after_the_cutoff(
    name: str, history: LoadSeries
) -> None:
    forecaster: Forecaster = MODELS[name]()
    forecast = forecaster.fit(history).predict(history, 30, QUANTILES)

    assert forecast.start == history.end
    assert forecast.step_seconds == history.step_seconds
    assert sorted(forecast.quantiles) == list(QUANTILES)
    paths = np.array([forecast.quantiles[q] for q in QUANTILES])
    assert paths.shape == (3, 30)
    assert not np.isnan(paths).any()
    assert (paths >= 0).all()
    assert (np.diff(paths, axis=0) >= 0).all(), "quantile paths must not cross"


@pytest.mark.parametrize("name", list(MODELS))
def test_no_model_reads_past_the_cutoff(name: str) -> None:
    series = daily_cycle(5)
    cutoff = series.start + 4 * 86400
    shuffled = series.values.copy()
    after = int(4 * DAY)
    shuffled[after:] = np.random.default_rng(3).permutation(shuffled[after:]) * 10
    other = LoadSeries(series.start, series.step_seconds, shuffled)

    forecasts = [
        MODELS[name]()
        .fit(s.until(cutoff))
        .predict(LoadSeries(s.start, s.step_seconds, s.values, cutoff), 30, QUANTILES)
        for s in (series, other)
    ]

    for q in QUANTILES:
        np.testing.assert_array_equal(forecasts[0].quantiles[q], forecasts[1].quantiles[q])


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize(
    "history",
    [
        pytest.param(LoadSeries(0.0, 60.0, np.full(5, np.nan)), id="no known value"),
        pytest.param(LoadSeries(0.0, 60.0, np.empty(0)), id="no step at all"),
        pytest.param(LoadSeries(0.0, 60.0, np.arange(10.0), cutoff=30.0), id="cutoff inside the first step"),
    ],
)
def test_no_model_returns_nan_for_a_history_with_no_known_value_only_as_missing(
    name: str, history: LoadSeries
) -> None:
    forecast = MODELS[name]().fit(history).predict(history, 3, QUANTILES)
    # Nothing known is reported as missing, never as zero load (which would scale down).
    assert all(np.isnan(forecast.path(q)).all() for q in QUANTILES)


def test_upper_quantile_covers_about_its_share_on_a_stationary_series() -> None:
    series = LoadSeries(0.0, 60.0, np.random.default_rng(4).gamma(20, 5, 5 * DAY))
    result = backtest(series, MODELS["last_value"](), test_seconds=2 * 86400.0, stride_seconds=300.0)
    # Calibrated on its own past errors, the 0.9 quantile covers about 90% of later actuals.
    assert all(0.82 < score.coverage < 0.97 for score in result.scores)


def test_auto_prefers_a_model_that_knows_the_cycle_on_a_clean_daily_cycle() -> None:
    history = daily_cycle(5)
    fitted = MODELS["auto"]().fit(history)
    assert fitted.predict(history, 10, QUANTILES).model not in {"auto:last_value", "auto:ewma"}


@dataclass
class RecordingCandidate:
    """A flat-path candidate that records how much history it was given to learn from."""

    name: str = "recording"
    min_history_seconds: float = 0.0
    seen_steps: list[int] = field(default_factory=list)

    def paths_for(self, visible: LoadSeries) -> PointPaths:
        self.seen_steps.append(len(visible.values))
        return point_paths.last_value


def test_auto_scores_candidates_on_origins_after_the_history_they_learnt_from() -> None:
    history = daily_cycle(3)
    recording = RecordingCandidate()
    SelectBest([MODELS["last_value"](), recording]).fit(history)
    # Learnt once, on history that stops before the newer half of the holdout.
    assert len(recording.seen_steps) == 1
    assert recording.seen_steps[0] < len(history.values) - 100


def test_auto_falls_back_to_last_value_on_short_history() -> None:
    history = LoadSeries(0.0, 60.0, np.linspace(10, 20, 10))
    assert MODELS["auto"]().fit(history).predict(history, 5, QUANTILES).model == "auto:last_value"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param(
            [np.nan, 1.0, np.nan, np.nan, 4.0], [np.nan, 1.0, 1.0, 1.0, 4.0], id="gaps carry the last value"
        ),
        pytest.param([np.nan, np.nan], [np.nan, np.nan], id="nothing known stays missing"),
    ],
)
def test_forward_fill(values: list[float], expected: list[float]) -> None:
    np.testing.assert_array_equal(forward_fill(np.array(values)), np.array(expected))


@pytest.mark.parametrize(
    ("values", "index", "expected"),
    [
        pytest.param(
            [1.0, np.nan, np.nan, 4.0, np.nan], [4, 2], [4.0, 1.0], id="a gap at the window start carries in"
        ),
        pytest.param(
            [np.nan, np.nan, 3.0, np.nan], [1, 3], [np.nan, 3.0], id="nothing known before stays missing"
        ),
        pytest.param([5.0, 6.0, 7.0], [2, 2, 1], [7.0, 7.0, 6.0], id="known values read as they are"),
        pytest.param([5.0], [], [], id="no index"),
    ],
)
def test_filled_at_reads_the_forward_fill_at_the_index(
    values: list[float], index: list[int], expected: list[float]
) -> None:
    got = filled_at(np.array(values), np.array(index, dtype=int))
    np.testing.assert_array_equal(got, np.array(expected))
    np.testing.assert_array_equal(got, forward_fill(np.array(values))[np.array(index, dtype=int)])


def test_point_paths_on_a_gappy_week_are_those_of_the_whole_fill() -> None:
    # The windowed fill must give the paths the whole-history fill gave, bit for bit, gaps and
    # long outages included.
    values = with_outage(with_gaps(daily_cycle(8), 0.3), 6.5, 7.2).values
    origins = np.array([2 * DAY, len(values) - 100, len(values) - 31, len(values)])
    filled = forward_fill(values)
    whole = filled[np.clip(origins[:, None] + np.arange(30)[None, :] - DAY, 0, None)]
    level = filled[origins - 1][:, None]
    np.testing.assert_array_equal(
        seasonal_naive(values, origins, 30, DAY), np.where(np.isnan(whole), level, whole)
    )
    np.testing.assert_array_equal(point_paths.last_value(values, origins, 3), np.repeat(level, 3, axis=1))


def test_seasonal_naive_reads_one_period_back_and_wraps_long_leads() -> None:
    values = np.arange(12, dtype=float)
    paths = seasonal_naive(values, np.array([12]), 6, period_steps=4)
    # Leads 0..3 read 8..11; leads 4, 5 reach past the origin, so read two periods back: 8, 9.
    np.testing.assert_array_equal(paths[0], [8, 9, 10, 11, 8, 9])


def test_seasonal_change_adds_the_ramp_of_past_periods_to_the_current_level() -> None:
    period = 10
    day = np.concatenate([np.zeros(5), np.arange(1, 6) * 10.0])  # a ramp in the second half
    values = np.concatenate([day, day, day[:5] + 100])  # today sits 100 higher
    paths = seasonal_change(values, np.array([25]), 3, period_steps=period, halflife_steps=0, periods=2)
    # Level 100; the same hours in the past two days rose by 10, 20 and 30.
    np.testing.assert_allclose(paths[0], [110, 120, 130])


@pytest.mark.parametrize(
    ("history", "expected"),
    [
        pytest.param(daily_cycle(5), "lightgbm", id="five days trains the boosters"),
        pytest.param(daily_cycle(1), "lightgbm:last_value", id="one day falls back to last value"),
        pytest.param(with_gaps(daily_cycle(5), 0.6), "lightgbm:last_value", id="mostly gaps falls back"),
        pytest.param(
            with_outage(daily_cycle(16), 7, 14), "lightgbm:last_value", id="no known week to train on"
        ),
    ],
)
def test_lightgbm_trains_only_on_enough_history(history: LoadSeries, expected: str) -> None:
    assert MODELS["lightgbm"]().fit(history).predict(history, 5, QUANTILES).model == expected


@pytest.mark.parametrize("name", list(MODELS))
def test_every_forecast_carries_a_finite_trailing_error_or_none(name: str) -> None:
    for history in (daily_cycle(4), with_gaps(daily_cycle(4), 0.5), LoadSeries(0.0, 60.0, np.array([5.0]))):
        error = MODELS[name]().fit(history).predict(history, 5, QUANTILES).trailing_error
        assert error is None or (np.isfinite(error) and error >= 0)


def test_trailing_error_is_low_on_a_steady_load_and_high_once_it_turns_erratic() -> None:
    # Two days flat at 100 rps, then the last hour alternating 100 and 300 rps every minute: the
    # model fitted on the flat part keeps predicting ~100 and its recent error says so.
    rng = np.random.default_rng(4)
    flat = 100 + rng.normal(0, 2, 2 * DAY)
    erratic = np.r_[flat, np.tile([100.0, 300.0], 30)]
    fitted = MODELS["last_value"]().fit(LoadSeries(0.0, 60.0, flat))
    steady = fitted.predict(LoadSeries(0.0, 60.0, flat), 5, (0.5,)).trailing_error
    turned = fitted.predict(LoadSeries(0.0, 60.0, erratic), 5, (0.5,)).trailing_error
    assert steady is not None and steady < 0.05
    # Last value is off by 200 rps at every other step against a mean near 200: about 0.5.
    assert turned is not None and turned > 0.4


@pytest.mark.parametrize(
    ("start", "cutoff", "expected"),
    [
        pytest.param(-600.0, 0.0, [1.0] * 5, id="cutoff at time 0"),
        pytest.param(-600.0, 1e-9, [1.0] * 5, id="cutoff just after 0"),
        pytest.param(-600.0, None, [1.0] * 5 + [999.0] * 5, id="no cutoff: the whole series"),
    ],
)
def test_resample_keeps_the_cutoff(start: float, cutoff: float | None, expected: list[float]) -> None:
    # 10 known minutes before time 0, 10 after that a model must not see.
    series = LoadSeries(start, 60.0, np.array([1.0] * 10 + [999.0] * 10), cutoff)
    np.testing.assert_array_equal(series.resample(120.0).visible().values, expected)

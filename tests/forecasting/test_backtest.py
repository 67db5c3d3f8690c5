"""Backtest, scores and trailing error."""

from __future__ import annotations

import numpy as np
import pytest

from forecasting import MODELS, LoadSeries, backtest, pinball_loss, trailing_relative_error


def cycle(days: int, step_seconds: float = 60.0) -> LoadSeries:
    steps = int(days * 86400 / step_seconds)
    t = np.arange(steps) * step_seconds
    noise = np.random.default_rng(5).normal(0, 2, steps)
    return LoadSeries(0.0, step_seconds, 50 + 40 * np.sin(2 * np.pi * t / 86400) + noise)


def test_backtest_scores_every_lead_and_rounds_leads_up_to_whole_steps() -> None:
    result = backtest(cycle(4, step_seconds=600.0), MODELS["last_value"](), test_seconds=86400.0)
    assert [score.lead_steps for score in result.scores] == [1, 1, 1, 1, 3]
    assert all(score.origins > 100 for score in result.scores)


def test_seasonal_model_beats_last_value_on_a_daily_cycle() -> None:
    series = cycle(5)
    baseline = backtest(series, MODELS["last_value"](), test_seconds=86400.0)
    seasonal = backtest(series, MODELS["seasonal_change"](), test_seconds=86400.0)
    far = -1  # the 30-minute lead, where the cycle moves most
    assert seasonal.scores[far].pinball_rps < baseline.scores[far].pinball_rps
    assert seasonal.scores[far].mae_ratio < 1


def test_backtest_forecasts_do_not_change_when_the_future_is_shuffled() -> None:
    series = cycle(5)
    split = 4 * 1440 + 300
    shuffled = series.values.copy()
    shuffled[split:] = np.random.default_rng(6).permutation(shuffled[split:])
    runs = [
        backtest(s, MODELS["auto"](), test_seconds=86400.0)
        for s in (series, LoadSeries(series.start, series.step_seconds, shuffled))
    ]
    before = runs[0].origins <= split
    assert before.sum() > 10
    for q in runs[0].quantiles:
        np.testing.assert_array_equal(runs[0].forecasts[q][before], runs[1].forecasts[q][before])
    assert not np.array_equal(runs[0].forecasts[0.9][~before], runs[1].forecasts[0.9][~before])


@pytest.mark.parametrize(
    ("actual", "predicted", "quantile", "expected"),
    [
        pytest.param([100.0], [90.0], 0.9, 9.0, id="under-forecast costs q per rps"),
        pytest.param([100.0], [110.0], 0.9, 1.0, id="over-forecast costs 1-q per rps"),
        pytest.param([100.0, np.nan], [100.0, 5.0], 0.5, 0.0, id="missing actuals are skipped"),
    ],
)
def test_pinball_loss(actual: list[float], predicted: list[float], quantile: float, expected: float) -> None:
    assert pinball_loss(np.array(actual), np.array(predicted), quantile) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("forecast", "actual", "window", "expected"),
    [
        pytest.param([90, 120], [100, 100], 10, 0.15, id="mean absolute error over mean actual"),
        pytest.param([0, 90, 120], [1000, 100, 100], 2, 0.15, id="only the newest window counts"),
        pytest.param([90, np.nan, 110], [100, 100, np.nan], 10, 0.1, id="missing pairs are skipped"),
        pytest.param([np.nan], [100], 10, None, id="nothing scored is unknown"),
        pytest.param([5, 5], [0, 0], 10, None, id="zero load has no relative error"),
    ],
)
def test_trailing_relative_error(
    forecast: list[float], actual: list[float], window: int, expected: float | None
) -> None:
    result = trailing_relative_error(forecast, actual, window)
    assert result == (pytest.approx(expected) if expected is not None else None)


def test_trailing_relative_error_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="lengths differ"):
        trailing_relative_error([1.0], [1.0, 2.0], 5)

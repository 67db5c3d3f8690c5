"""Forecast error measures shared by the backtest, the selector and forecast trust."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pinball_loss(actual: np.ndarray, predicted: np.ndarray, quantile: float) -> float:
    """Mean quantile loss in the unit of the series, NaN actuals ignored. At q = 0.9 an
    under-forecast by 10 rps costs 9, an over-forecast by 10 rps costs 1."""
    error = np.asarray(actual, dtype=float) - np.asarray(predicted, dtype=float)
    loss = np.maximum(quantile * error, (quantile - 1) * error)
    return float(np.nanmean(loss)) if np.any(~np.isnan(loss)) else float("nan")


def trailing_relative_error(
    forecast_rps: Sequence[float] | np.ndarray, actual_rps: Sequence[float] | np.ndarray, window_steps: int
) -> float | None:
    """Mean absolute error over the newest `window_steps` scored steps divided by the mean
    actual there: forecasts 90 and 120 against actuals 100 and 100 give (10 + 20) / 2 / 100 = 0.15.
    Steps where either side is missing are skipped; None when nothing is left or the load is 0."""
    forecast = np.asarray(forecast_rps, dtype=float)
    actual = np.asarray(actual_rps, dtype=float)
    if forecast.shape != actual.shape:
        raise ValueError(f"forecast and actual lengths differ: {forecast.shape} vs {actual.shape}")
    scored = ~np.isnan(forecast) & ~np.isnan(actual)
    forecast, actual = forecast[scored][-window_steps:], actual[scored][-window_steps:]
    # Sums over counts, as np.mean computes them, without its dispatch: forecast trust asks on
    # every tick of every workload.
    mean_actual = actual.sum() / len(actual) if len(actual) else 0.0
    if mean_actual <= 0:
        return None
    return float(np.abs(forecast - actual).sum() / len(actual) / mean_actual)

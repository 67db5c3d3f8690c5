"""Rolling-origin backtest at the leads that matter for pre-warming.

From each origin in the test span the forecaster (refitted on a schedule, on data before the
refit time only) predicts from the history before that origin; each lead is scored against what
happened. A lead shorter than the series step rounds up to one step (ceil(lead / step)): on a
10-minute series the 1, 2, 5 and 10 minute leads are all the first step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from forecasting.model import FittedForecaster, Forecaster
from forecasting.point_models import horizon_steps_for
from forecasting.point_paths import forward_fill
from forecasting.scores import pinball_loss
from forecasting.series import LoadSeries

LEADS_SECONDS = (60.0, 120.0, 300.0, 600.0, 1800.0)
QUANTILES = (0.5, 0.9)
# An under-forecast is an actual above the upper quantile by more than this share: 10% short
# of the sizing quantile is where queues start to grow.
UNDER_FORECAST_MARGIN = 0.1


@dataclass(frozen=True, slots=True)
class LeadScore:
    """Scores of one model at one lead over all test origins whose actual is known.

    `mae_ratio` is the MAE of the median over the MAE of last value at the same origins (below 1
    beats last value); `pinball_rps` the mean pinball loss over the quantiles; `coverage` the
    share of actuals at or below the upper quantile; `under_forecast_rate` the share more than
    10% above it."""

    lead_seconds: float
    lead_steps: int
    origins: int
    mae_ratio: float
    pinball_rps: float
    coverage: float
    under_forecast_rate: float


@dataclass(frozen=True, slots=True)
class BacktestResult:
    model: str
    quantiles: tuple[float, ...]
    scores: tuple[LeadScore, ...]
    # The per-origin forecasts, rows are origins, columns leads: kept so that tests can check
    # that forecasts before a time do not depend on data after it.
    forecasts: dict[float, np.ndarray]
    origins: np.ndarray
    # The name each fit reported, in order: `lightgbm:last_value` is a LightGBM fit that fell back
    # to last value (too little history), `auto:ewma` the selector choosing EWMA.
    fitted_as: tuple[str, ...] = ()


def rolling_origins(
    series: LoadSeries, test_seconds: float, stride_seconds: float, horizon: int
) -> np.ndarray:
    """Origin indices over the last `test_seconds`, every `stride_seconds`, each with a full horizon."""
    stride = max(1, round(stride_seconds / series.step_seconds))
    last = len(series.values) - horizon
    first = max(1, last - int(test_seconds / series.step_seconds))
    return np.arange(first, last + 1, stride)


def backtest(
    series: LoadSeries,
    forecaster: Forecaster,
    *,
    leads_seconds: Sequence[float] = LEADS_SECONDS,
    quantiles: Sequence[float] = QUANTILES,
    test_seconds: float = 3 * 86400.0,
    stride_seconds: float = 600.0,
    refit_seconds: float = 86400.0,
    on_origin: Callable[[int, int], None] | None = None,
) -> BacktestResult:
    """Score `forecaster` on `series`; `on_origin(done, total)` reports progress."""
    quantiles = tuple(sorted(quantiles))
    lead_steps = [horizon_steps_for(lead, series.step_seconds) for lead in leads_seconds]
    horizon = max(lead_steps)
    origins = rolling_origins(series, test_seconds, stride_seconds, horizon)
    paths = {q: np.full((len(origins), horizon), np.nan) for q in quantiles}
    fitted: FittedForecaster | None = None
    fitted_at = -np.inf
    name = getattr(forecaster, "name", type(forecaster).__name__)
    fitted_as: list[str] = []
    for row, origin in enumerate(origins):
        origin_time = series.start + origin * series.step_seconds
        if fitted is None or origin_time - fitted_at >= refit_seconds:
            fitted, fitted_at = forecaster.fit(series.until(origin_time)), origin_time
            fitted_as.append(getattr(fitted, "name", name))
        forecast = fitted.predict(series.until(origin_time), horizon, quantiles)
        for q in quantiles:
            paths[q][row] = forecast.path(q)
        if on_origin is not None:
            on_origin(row + 1, len(origins))
    actual = _actuals(series.values, origins, horizon)
    naive = forward_fill(series.values)[np.maximum(origins - 1, 0)]
    scores = tuple(
        _score(lead, steps, actual[:, steps - 1], naive, {q: p[:, steps - 1] for q, p in paths.items()})
        for lead, steps in zip(leads_seconds, lead_steps, strict=True)
    )
    return BacktestResult(name, quantiles, scores, paths, origins, tuple(fitted_as))


def _actuals(values: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
    index = origins[:, None] + np.arange(horizon)[None, :]
    return values[np.clip(index, 0, len(values) - 1)]


def _score(
    lead_seconds: float,
    lead_steps: int,
    actual: np.ndarray,
    naive: np.ndarray,
    paths: dict[float, np.ndarray],
) -> LeadScore:
    known = ~np.isnan(actual) & ~np.isnan(naive)
    actual, naive = actual[known], naive[known]
    paths = {q: p[known] for q, p in paths.items()}
    median, upper = paths[min(paths, key=lambda q: abs(q - 0.5))], paths[max(paths)]
    naive_mae = float(np.mean(np.abs(actual - naive))) if len(actual) else float("nan")
    mae = float(np.mean(np.abs(actual - median))) if len(actual) else float("nan")
    return LeadScore(
        lead_seconds=lead_seconds,
        lead_steps=lead_steps,
        origins=len(actual),
        mae_ratio=mae / naive_mae if naive_mae > 0 else float("nan"),
        pinball_rps=float(np.mean([pinball_loss(actual, p, q) for q, p in paths.items()])),
        coverage=float(np.mean(actual <= upper)) if len(actual) else float("nan"),
        under_forecast_rate=float(np.mean(actual > upper * (1 + UNDER_FORECAST_MARGIN)))
        if len(actual)
        else float("nan"),
    )

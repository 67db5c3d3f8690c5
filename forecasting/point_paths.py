"""Point forecasts for many origins at once: baselines, seasonal change and seasonal shape.

Every function maps a history `values` (NaN gaps), an array of `origins` (index of the first
forecast step; only values before it may be read) and `horizon_steps` to a matrix of point
forecasts, one row per origin. Vectorised over origins so that fitting can score hundreds of
past origins in one numpy call. A row is NaN only when no value is known before its origin.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd


def forward_fill(values: np.ndarray) -> np.ndarray:
    """Carry the last known value over gaps (leading gaps stay NaN)."""
    known = ~np.isnan(values)
    last_known = np.maximum.accumulate(np.where(known, np.arange(len(values)), -1))
    filled = values[np.maximum(last_known, 0)]
    return np.where(last_known >= 0, filled, np.nan)


def filled_at(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """`forward_fill(values)[index]` for indices inside `values`, filling only from the smallest
    one on: a prediction reads a few hundred steps near the end of a week of history, and filling
    the whole week on every tick of every workload was most of a prediction's cost."""
    if index.size == 0:
        return np.empty(index.shape)
    low = int(index.min())
    filled = forward_fill(values[low : int(index.max()) + 1])
    if np.isnan(filled[0]):
        # After the fill only a leading gap is NaN: it carries the last value known before it.
        known_before = np.flatnonzero(~np.isnan(values[:low]))
        if known_before.size:
            filled = np.where(np.isnan(filled), values[known_before[-1]], filled)
    return filled[index - low]


def last_value(values: np.ndarray, origins: np.ndarray, horizon_steps: int) -> np.ndarray:
    """Flat path at the last known value before each origin."""
    level = _level_before_at(values, origins)
    return np.repeat(level[:, None], horizon_steps, axis=1)


def ewma(values: np.ndarray, origins: np.ndarray, horizon_steps: int, halflife_steps: float) -> np.ndarray:
    """Flat path at the exponentially weighted mean; gaps are skipped, not read as zero."""
    smoothed = _smooth(values, halflife_steps)
    return np.repeat(_level_before(smoothed, origins)[:, None], horizon_steps, axis=1)


def seasonal_naive(
    values: np.ndarray, origins: np.ndarray, horizon_steps: int, period_steps: int
) -> np.ndarray:
    """The value one period earlier (several periods earlier for leads beyond one period).
    Origins with less than a period of history fall back to the last value."""
    leads = np.arange(horizon_steps)
    # Lead h reads h - k*P with k = ceil((h+1)/P) so the source is always before the origin:
    # with P = 1440 and h = 29 that is origin - 1411.
    periods_back = (leads // period_steps + 1) * period_steps
    source = origins[:, None] + leads[None, :] - periods_back[None, :]
    if len(values) == 0:
        return np.full(source.shape, np.nan)
    # One fill for the sources and the fallback level (last_value's) together. Clipped with
    # maximum/minimum: np.clip's dispatch costs more than the few hundred indices it clips.
    before = np.minimum(np.maximum(origins - 1, 0), len(values) - 1)
    filled = filled_at(values, np.concatenate([np.maximum(source, 0).ravel(), before]))
    paths = filled[: source.size].reshape(source.shape)
    fallback = np.where(origins >= 1, filled[source.size :], np.nan)[:, None]
    return np.where((source >= 0) & ~np.isnan(paths), paths, fallback)


def seasonal_change(
    values: np.ndarray,
    origins: np.ndarray,
    horizon_steps: int,
    period_steps: int,
    halflife_steps: float,
    periods: int,
) -> np.ndarray:
    """Current smoothed level plus the change the same hours showed in the last `periods`
    periods: level(t) + mean_k[s(t - kP + h) - s(t - kP)], s the smoothed series.

    A flat baseline misses the morning ramp; a seasonal naive misses today's level. With a level
    of 100 rps, and yesterday's and the day before's ramps of +20 and +30 rps over the next 10
    minutes, the forecast for 10 minutes ahead is 125 rps. Missing periods are skipped; with
    none the path is flat at the level.
    """
    smoothed = forward_fill(_smooth(values, halflife_steps))
    level = _level_before(smoothed, origins)
    leads = np.arange(1, horizon_steps + 1)
    changes = np.zeros((len(origins), horizon_steps))
    counted = np.zeros((len(origins), horizon_steps))
    for k in range(1, periods + 1):
        anchor = origins - k * period_steps - 1
        target = anchor[:, None] + leads[None, :]
        usable = (anchor[:, None] >= 0) & (target < origins[:, None])
        before = smoothed[np.clip(anchor, 0, len(smoothed) - 1)][:, None]
        after = smoothed[np.clip(target, 0, len(smoothed) - 1)]
        change = after - before
        usable &= ~np.isnan(change)
        changes += np.where(usable, change, 0.0)
        counted += usable
    mean_change = np.divide(changes, counted, out=np.zeros_like(changes), where=counted > 0)
    # A seasonal drop never forecasts below zero load.
    return np.maximum(level[:, None] + mean_change, 0.0)


def shape_change(
    values: np.ndarray,
    origins: np.ndarray,
    horizon_steps: int,
    shape_at: Callable[[np.ndarray], np.ndarray],
    step_seconds: float,
    halflife_steps: float,
) -> np.ndarray:
    """Current smoothed level plus the change of a learned seasonal shape over the lead:
    level(t) + shape(t + h) - shape(t - 1), with `shape_at` mapping seconds since the start of
    `values` to rps. At a level of 100 rps where the shape rises from -20 to +5 rps over the
    next 30 minutes, the 30-minute forecast is 125 rps."""
    smoothed = forward_fill(_smooth(values, halflife_steps))
    level = _level_before(smoothed, origins)
    # A step is read at its centre: step i covers [i*step, (i+1)*step).
    anchor = shape_at((origins - 0.5) * step_seconds)
    targets = shape_at((origins[:, None] + np.arange(horizon_steps)[None, :] + 0.5) * step_seconds)
    return np.maximum(level[:, None] + targets - anchor[:, None], 0.0)


def _smooth(values: np.ndarray, halflife_steps: float) -> np.ndarray:
    if halflife_steps <= 0:
        return values
    series = pd.Series(values)
    return series.ewm(halflife=halflife_steps, ignore_na=True).mean().to_numpy()


def _level_before_at(values: np.ndarray, origins: np.ndarray) -> np.ndarray:
    """`_level_before(forward_fill(values), origins)`, filling only what the origins read."""
    if len(values) == 0:
        return np.full(len(origins), np.nan)
    index = np.minimum(np.maximum(origins - 1, 0), len(values) - 1)
    return np.where(origins >= 1, filled_at(values, index), np.nan)


def _level_before(filled: np.ndarray, origins: np.ndarray) -> np.ndarray:
    if len(filled) == 0:
        return np.full(len(origins), np.nan)
    index = np.clip(origins - 1, 0, len(filled) - 1)
    return np.where(origins >= 1, filled[index], np.nan)

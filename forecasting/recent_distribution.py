"""recent_quantiles: the load of the next minutes is distributed like the load of the last hour,
shifted by the change the same hours showed on previous days.

A point model plus residual quantiles answers "where will the load be in 5 minutes, and how far
off might I be"; on bursty minute-level traffic (NASA) both halves are noisy, and a point path
follows a sudden collapse down within minutes. What a replica count needs is the spread of the
load over the next few minutes, and the last hour's own values are a direct sample of it: an
hour's upper quantiles ignore one dip or one burst, yet move within the hour when the level really
changes (decide() holds replicas at the 0.84 quantile by default). The daily shift corrects the
sample for the part of the change that repeats: if on past days the 10 minutes after this clock
time carried 20 % more than the hour before it, the hour's quantiles are raised by 20 % (the shift
is bounded to +-30 %, so one odd day cannot swing it).

Example: last hour's values 40..100 rps, evenly spread; on the last 7 days the next 10 minutes
averaged 10 % above the preceding hour -> the 0.5 path is 70 * 1.1 = 77 rps, flat over the horizon.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from forecasting.forecast import Forecast
from forecasting.model import ScalingGoal
from forecasting.point_paths import forward_fill
from forecasting.selection import SamplePathModel
from forecasting.series import LoadSeries

NAME = "recent_quantiles"
RECENT_SECONDS = 3600.0
AHEAD_SECONDS = 600.0
DAY_SECONDS = 86400.0
SEASONAL_DAYS = 7
MAX_DAILY_SHIFT = 0.3


@dataclass(frozen=True, slots=True)
class RecentQuantiles:
    """Nothing to learn: the quantiles are read from the history given to predict."""

    name: str = NAME

    def fit(self, history: LoadSeries, goal: ScalingGoal | None = None) -> RecentQuantiles:
        return self

    def predict(self, history: LoadSeries, horizon_steps: int, quantiles: Sequence[float]) -> Forecast:
        """Flat paths at the quantiles of the last hour's known steps times the daily shift.
        Falls back to the last known value when the last hour has none, and to NaN paths
        (missing, not zero load) when nothing is known at all."""
        return forecast_from_paths(self, history, horizon_steps, quantiles)

    def paths_at(
        self,
        values: np.ndarray,
        step_seconds: float,
        origins: np.ndarray,
        horizon_steps: int,
        quantiles: Sequence[float],
    ) -> np.ndarray:
        """What predict returns from `values[:origin]`, for every origin at once: shape
        (origins, quantiles, horizon_steps), quantiles in the order given."""
        levels = recent_levels(values, step_seconds, origins, quantiles)
        return np.repeat(levels[:, :, None], horizon_steps, axis=2)


def forecast_from_paths(
    model: SamplePathModel, history: LoadSeries, horizon_steps: int, quantiles: Sequence[float]
) -> Forecast:
    """A sample-path model's predict: its paths at the one origin after the visible history."""
    visible = history.visible()
    ordered = sorted(quantiles)
    now = np.array([len(visible.values)])
    paths = model.paths_at(visible.values, visible.step_seconds, now, horizon_steps, ordered)[0]
    return Forecast(
        start=visible.end,
        step_seconds=visible.step_seconds,
        quantiles={q: paths[i] for i, q in enumerate(ordered)},
        model=model.name,
        # Unscored on purpose: the spread of the paths is this model's uncertainty already,
        # and decide() shrinking it towards the live load would undo what it is for.
        trailing_error=None,
        maturity=maturity(visible.values, visible.step_seconds),
    )


def maturity(values: np.ndarray, step_seconds: float) -> float:
    """The span since the first known value over RECENT_SECONDS, at most 1: how much of the hour
    the paths are read from a new workload has seen. Gaps after the first value do not count
    against it (the quantiles read what is known; a stale reading is the decision's to judge).

    Example: 60 s steps, first known value 20 steps before the end -> 1/3."""
    known = np.flatnonzero(~np.isnan(values))
    if not len(known):
        return 0.0
    return min(1.0, (len(values) - known[0]) * step_seconds / RECENT_SECONDS)


def recent_levels(
    values: np.ndarray, step_seconds: float, origins: np.ndarray, quantiles: Sequence[float]
) -> np.ndarray:
    """(origins, quantiles): the quantiles of the RECENT_SECONDS before each origin (the last
    known value when none is known there, NaN when nothing is) times the daily shift."""
    windows = windows_before(values, origins, max(1, round(RECENT_SECONDS / step_seconds)))
    levels = nan_quantiles(windows, quantiles).T
    empty = np.isnan(windows).all(axis=1)
    if empty.any():
        # filled[i]: the last value known before index i.
        filled = np.concatenate(([np.nan], forward_fill(values)))
        levels[empty] = filled[origins[empty]][:, None]
    return levels * daily_shift(values, step_seconds, origins)[:, None]


def windows_before(values: np.ndarray, origins: np.ndarray, width: int) -> np.ndarray:
    """(origins, width): the `width` values before each origin, NaN where that runs before the
    first value, so that an origin with less history behind it reads what there is."""
    if not len(values):
        return np.full((len(origins), width), np.nan)
    index = origins[:, None] - width + np.arange(width)[None, :]
    if index.size and index.min() >= 0 and index.max() < len(values):
        # Every window inside the history (each tick's prediction once a week is held): plain
        # indexing, without the masking that costs a third of a prediction.
        return values[index]
    return np.where(index >= 0, values[np.minimum(np.maximum(index, 0), len(values) - 1)], np.nan)


def nan_quantiles(samples: np.ndarray, quantiles: Sequence[float]) -> np.ndarray:
    """np.nanquantile over the last axis, quantiles first (NaN where a row has no known value),
    the same numbers without its Python loop over rows (on a week of 60 s history that loop was
    nine tenths of an objective_choice fit, 200 ms of it)."""
    rows = samples.reshape(-1, samples.shape[-1])
    out = np.full((len(quantiles), len(rows)), np.nan)
    missing = np.isnan(rows)
    gappy, empty = missing.any(axis=1), missing.all(axis=1)
    if not gappy.all():
        out[:, ~gappy] = complete_quantiles(rows[~gappy], quantiles)
    partial = gappy & ~empty
    if partial.any():
        # np.sort puts NaN last, so each row's known values lead it, in order.
        ordered = np.sort(rows[partial], axis=1)
        out[:, partial] = _linear_quantiles(ordered, (~missing[partial]).sum(axis=1), quantiles)
    return out.reshape(len(quantiles), *samples.shape[:-1])


def complete_quantiles(rows: np.ndarray, quantiles: Sequence[float]) -> np.ndarray:
    """np.quantile(rows, quantiles, axis=1) for rows without NaN, the same floats, without its
    argument handling: a third of each tick's prediction."""
    ordered = np.sort(rows, axis=1)
    n = rows.shape[1]
    virtual = (n - 1) * np.asarray(quantiles, dtype=float)
    below = np.floor(virtual)
    # np.minimum/np.maximum: np.clip's dispatch costs more than the work on a few quantiles.
    lower = np.minimum(np.maximum(below.astype(np.intp), 0), n - 1)
    upper = np.minimum(lower + 1, n - 1)
    return _lerp(ordered[:, lower].T, ordered[:, upper].T, (virtual - below)[:, None])


def _linear_quantiles(ordered: np.ndarray, counts: np.ndarray, quantiles: Sequence[float]) -> np.ndarray:
    """(quantiles, rows): numpy's 'linear' quantiles of the first `counts[i]` values of each
    sorted row i (each count at least 1)."""
    virtual = (counts[None, :] - 1) * np.asarray(quantiles, dtype=float)[:, None]
    below = np.floor(virtual)
    last = (counts - 1)[None, :]
    lower = np.minimum(np.maximum(below.astype(np.intp), 0), last)
    upper = np.minimum(lower + 1, last)
    row = np.arange(len(ordered))[None, :]
    return _lerp(ordered[row, lower], ordered[row, upper], virtual - below)


def _lerp(a: np.ndarray, b: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """numpy's quantile interpolation step by step (index (n - 1) q, the neighbours' lerp from
    the nearer side), so the floats are np.quantile's to the last bit."""
    difference = b - a
    return np.where(gamma >= 0.5, b - difference * (1 - gamma), a + difference * gamma)


def nan_medians(rows: np.ndarray) -> np.ndarray:
    """np.nanmedian of each row (NaN for a row with no known value), the same numbers: for a 2-D
    array nanmedian goes through masked arrays, ten times slower than a median per row."""
    out = np.full(len(rows), np.nan)
    missing = np.isnan(rows)
    gappy, empty = missing.any(axis=1), missing.all(axis=1)
    if not gappy.all():
        out[~gappy] = np.median(rows[~gappy], axis=1)
    for row in np.flatnonzero(gappy & ~empty):
        out[row] = np.nanmedian(rows[row])
    return out


def nan_means(rows: np.ndarray) -> np.ndarray:
    """np.nanmean of each row (NaN for a row with no known value), without its warning."""
    known = ~np.isnan(rows)
    count = known.sum(axis=1)
    total = np.where(known, rows, 0.0).sum(axis=1)
    return np.divide(total, count, out=np.full(len(rows), np.nan), where=count > 0)


def daily_shift(values: np.ndarray, step_seconds: float, origins: np.ndarray) -> np.ndarray:
    """Per origin, the ratio of the load in the AHEAD_SECONDS after that clock time to the
    RECENT_SECONDS before it, summed over the last SEASONAL_DAYS days that have both (only
    values before the origin are read); 1.0 without any such day.

    Example: one day back, the hour before averaged 50 rps and the 10 minutes after 60 rps -> 1.2.
    """
    day = round(DAY_SECONDS / step_seconds)
    before = max(1, round(RECENT_SECONDS / step_seconds))
    after = max(1, round(AHEAD_SECONDS / step_seconds))
    # (origins, days back): the same clock time on each day back.
    start = (origins[:, None] - np.arange(1, SEASONAL_DAYS + 1)[None, :] * day).ravel()
    mean_before = nan_means(windows_before(values, start, before)).reshape(len(origins), SEASONAL_DAYS)
    mean_after = nan_means(windows_before(values, start + after, after)).reshape(len(origins), SEASONAL_DAYS)
    known = (
        (start.reshape(len(origins), SEASONAL_DAYS) - before >= 0)
        & ~np.isnan(mean_before)
        & ~np.isnan(mean_after)
    )
    mean_before, mean_after = np.where(known, mean_before, 0.0), np.where(known, mean_after, 0.0)
    # Summed day by day, nearest first: a running sum adds in that order, where sum() pairs.
    total_before = np.cumsum(mean_before, axis=1)[:, -1]
    total_after = np.cumsum(mean_after, axis=1)[:, -1]
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.minimum(np.maximum(total_after / total_before, 1 - MAX_DAILY_SHIFT), 1 + MAX_DAILY_SHIFT)
    return np.where((total_before > 0) & (total_after > 0), shift, 1.0)

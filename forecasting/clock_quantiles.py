"""clock_quantiles: the load at each step ahead is distributed like the load at the same clock
time on the last days, relative to the hour before it on each day, times the last hour's level.

recent_quantiles reads the spread of the next minutes from the last hour's own values, so a burst
that comes back at the same clock time every day (a batch job at 02:00, the Twitter stream's
bursts at :31 of odd hours) is invisible until it has happened, and once it has, the hour's upper
quantiles hold its level for an hour. Here the sample for step h ahead is, for each of the last
SEASONAL_DAYS days, the load at that day's same clock time (and the steps either side of it) over
the median of the hour before that clock time on that day; the path at quantile q is the last
hour's median times the q-quantile of that sample. A burst seen at this clock time on most days
raises the paths for its minutes only, before it comes; a day with a one-off burst is one sample
of several.

Example: the last hour's median is 100 rps; over the last 7 days the load 3 minutes after this
clock time was 1.0, 1.1, 0.9, 4.0, 3.8, 4.2 and 1.0 times the hour before it (and the same at the
steps either side) -> the 0.5 path is 110 rps and the 0.9 path 400 rps at that step.

Under MIN_DAYS days of history it is recent_quantiles.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from forecasting.forecast import Forecast
from forecasting.model import ScalingGoal
from forecasting.recent_distribution import (
    DAY_SECONDS,
    RECENT_SECONDS,
    SEASONAL_DAYS,
    RecentQuantiles,
    forecast_from_paths,
    nan_medians,
    nan_quantiles,
    windows_before,
)
from forecasting.series import LoadSeries

NAME = "clock_quantiles"
MIN_DAYS = 2
# The steps either side of the same clock time that join its sample: a burst that comes a minute
# early or late on some days still counts.
NEIGHBOUR_STEPS = 1


@dataclass(frozen=True, slots=True)
class ClockQuantiles:
    """Nothing to learn: every sample is read from the history given to predict."""

    name: str = NAME

    def fit(self, history: LoadSeries, goal: ScalingGoal | None = None) -> ClockQuantiles:
        return self

    def predict(self, history: LoadSeries, horizon_steps: int, quantiles: Sequence[float]) -> Forecast:
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
        (origins, quantiles, horizon_steps), quantiles in the order given. An origin with fewer
        than MIN_DAYS usable days, or no known value in its last hour, gets recent_quantiles'."""
        ratios, days = clock_ratios(values, step_seconds, origins, horizon_steps)
        level = _recent_median(values, step_seconds, origins)
        own = (days >= MIN_DAYS) & ~np.isnan(level)
        paths = np.empty((len(origins), len(quantiles), horizon_steps))
        if not own.all():
            fallback = RecentQuantiles().paths_at(
                values, step_seconds, origins[~own], horizon_steps, quantiles
            )
            paths[~own] = fallback
        if own.any():
            # (q, origins, steps); a step with no known sample is NaN on every path (missing).
            spread = nan_quantiles(ratios[own].transpose(0, 2, 1), quantiles)
            paths[own] = level[own, None, None] * spread.transpose(1, 0, 2)
        return paths


def clock_ratios(
    values: np.ndarray, step_seconds: float, origins: np.ndarray, horizon_steps: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per origin, rows of one per (day back, neighbour offset) and columns the steps ahead: the
    load at that day's same clock time plus the step, over the median of the hour before that
    clock time on that day, reading only values before the origin (NaN where a day has no known
    hour or a zero median). Also how many days gave a known ratio, per origin."""
    day = round(DAY_SECONDS / step_seconds)
    hour = max(1, round(RECENT_SECONDS / step_seconds))
    offsets = np.arange(-NEIGHBOUR_STEPS, NEIGHBOUR_STEPS + 1)
    ahead = np.arange(horizon_steps)
    # (origins, days back): the same clock time on each day, and the median of the hour before it.
    start = origins[:, None] - np.arange(1, SEASONAL_DAYS + 1)[None, :] * day
    base = nan_medians(windows_before(values, start.ravel(), hour)).reshape(start.shape)
    based = (start - hour >= 0) & (base > 0)  # False for NaN too
    # (origins, days, offsets, steps ahead)
    at = start[:, :, None, None] + offsets[None, None, :, None] + ahead[None, None, None, :]
    inside = based[:, :, None, None] & (at >= 0) & (at < origins[:, None, None, None])
    read = values[np.clip(at, 0, max(len(values) - 1, 0))] if len(values) else np.full(at.shape, np.nan)
    sample = np.divide(read, base[:, :, None, None], out=np.full(at.shape, np.nan), where=inside)
    days = (based & np.isfinite(sample).any(axis=(2, 3))).sum(axis=1)
    return sample.reshape(len(origins), SEASONAL_DAYS * len(offsets), horizon_steps), days


def _recent_median(values: np.ndarray, step_seconds: float, origins: np.ndarray) -> np.ndarray:
    """The median of the known values in the hour before each origin (NaN when none is known)."""
    return nan_medians(windows_before(values, origins, max(1, round(RECENT_SECONDS / step_seconds))))

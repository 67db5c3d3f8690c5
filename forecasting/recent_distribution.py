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

    def fit(self, history: LoadSeries) -> RecentQuantiles:
        return self

    def predict(self, history: LoadSeries, horizon_steps: int, quantiles: Sequence[float]) -> Forecast:
        """Flat paths at the quantiles of the last hour's known steps times the daily shift.
        Falls back to the last known value when the last hour has none, and to NaN paths
        (missing, not zero load) when nothing is known at all."""
        visible = history.visible()
        values = visible.values
        step = visible.step_seconds
        recent = values[-max(1, round(RECENT_SECONDS / step)) :]
        known = recent[~np.isnan(recent)]
        if not known.size:
            earlier = values[~np.isnan(values)]
            known = earlier[-1:]
        ordered = sorted(quantiles)
        if known.size:
            levels = np.quantile(known, ordered) * daily_shift(values, step)
        else:
            levels = np.full(len(ordered), np.nan)
        return Forecast(
            start=visible.end,
            step_seconds=step,
            quantiles=dict(zip(ordered, np.repeat(levels[:, None], horizon_steps, axis=1), strict=True)),
            model=self.name,
            # Unscored on purpose: the spread of the paths is this model's uncertainty already,
            # and decide() shrinking it towards the live load would undo what it is for.
            trailing_error=None,
        )


def daily_shift(values: np.ndarray, step_seconds: float) -> float:
    """Ratio of the load in the AHEAD_SECONDS after this clock time to the RECENT_SECONDS before
    it, summed over the last SEASONAL_DAYS days that have both; 1.0 without any such day.

    Example: one day back, the hour before averaged 50 rps and the 10 minutes after 60 rps -> 1.2.
    """
    day = round(DAY_SECONDS / step_seconds)
    before = max(1, round(RECENT_SECONDS / step_seconds))
    after = max(1, round(AHEAD_SECONDS / step_seconds))
    origins = len(values) - day * np.arange(1, SEASONAL_DAYS + 1)
    origins = origins[origins >= before]
    # All the days' windows in two matrices, one row a day: a pair of nanmeans per day was
    # two thirds of this model's prediction, which runs every tick for every workload. A later
    # window never runs past the end: a day is longer than AHEAD_SECONDS.
    earlier = values[origins[:, None] + np.arange(-before, 0)]
    later = values[origins[:, None] + np.arange(after)]
    usable = ~np.isnan(earlier).all(axis=1) & ~np.isnan(later).all(axis=1)
    if not usable.any():
        return 1.0
    # Summed in day order, one day's mean at a time, as the sum over the days is defined.
    total_before = sum(np.nanmean(earlier[usable], axis=1).tolist(), 0.0)
    total_after = sum(np.nanmean(later[usable], axis=1).tolist(), 0.0)
    if total_before <= 0 or total_after <= 0:
        return 1.0
    return min(max(total_after / total_before, 1 - MAX_DAILY_SHIFT), 1 + MAX_DAILY_SHIFT)

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

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from forecasting.forecast import Forecast
from forecasting.recent_distribution import DAY_SECONDS, RECENT_SECONDS, SEASONAL_DAYS, RecentQuantiles
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

    def fit(self, history: LoadSeries) -> ClockQuantiles:
        return self

    def predict(self, history: LoadSeries, horizon_steps: int, quantiles: Sequence[float]) -> Forecast:
        visible = history.visible()
        values = visible.values
        step = visible.step_seconds
        ratios = clock_ratios(values, step, horizon_steps)
        level = _recent_median(values, step)
        if ratios is None or level is None:
            fallback = RecentQuantiles().predict(history, horizon_steps, quantiles)
            return Forecast(fallback.start, fallback.step_seconds, fallback.quantiles, self.name, None)
        ordered = sorted(quantiles)
        # ratios: (samples, horizon); a step with no known sample is NaN on every path (missing).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN step: NaN, said above
            levels = level * np.nanquantile(ratios, ordered, axis=0)
        return Forecast(
            start=visible.end,
            step_seconds=step,
            quantiles={q: levels[i] for i, q in enumerate(ordered)},
            model=self.name,
            # Unscored, as recent_quantiles: the paths' spread is the uncertainty already.
            trailing_error=None,
        )


def clock_ratios(values: np.ndarray, step_seconds: float, horizon_steps: int) -> np.ndarray | None:
    """Rows: one per (day back, neighbour offset); columns: the steps ahead. Each entry is the
    load at that day's same clock time plus the step, over the median of the hour before that
    clock time on that day. None when fewer than MIN_DAYS days have both."""
    day = round(DAY_SECONDS / step_seconds)
    hour = max(1, round(RECENT_SECONDS / step_seconds))
    now = len(values)
    ahead = np.arange(horizon_steps)
    rows = []
    days = 0
    for back in range(1, SEASONAL_DAYS + 1):
        origin = now - back * day
        if origin - hour < 0:
            break
        before = values[origin - hour : origin]
        if np.isnan(before).all():
            continue
        base = float(np.nanmedian(before))
        if not base > 0:
            continue
        used = False
        for offset in range(-NEIGHBOUR_STEPS, NEIGHBOUR_STEPS + 1):
            at = origin + ahead + offset
            row = np.full(horizon_steps, np.nan)
            inside = (at >= 0) & (at < now)
            row[inside] = values[at[inside]] / base
            used = used or bool(np.isfinite(row).any())
            rows.append(row)
        days += used
    if days < MIN_DAYS:
        return None
    return np.vstack(rows)


def _recent_median(values: np.ndarray, step_seconds: float) -> float | None:
    recent = values[-max(1, round(RECENT_SECONDS / step_seconds)) :]
    if np.isnan(recent).all():
        return None
    return float(np.nanmedian(recent))

"""Holt-Winters and MSTL forecasters (statsmodels): the seasonal shape from the model, the level
from the newest data.

At 5-30 minute leads the current level beats any seasonal model's level, but the daily shape
tells which way the next half hour goes. So the statsmodels model is fitted once per refit on a
coarse grid (1-minute data averaged to 15 minutes: 672 points for a week; at most 15 days), its
seasonal component over the last period is kept as a profile, and the forecast is the smoothed
current level plus the profile's change over the lead (`point_paths.shape_change`). Predicting never
calls statsmodels, and a profile fitted an hour ago still starts from the current level.

A history with less than two daily periods on the coarse grid, or more than half of it missing,
falls back to last value (the fitted model is then named `holt_winters:last_value`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
from statsmodels.tools.sm_exceptions import ConvergenceWarning
from statsmodels.tsa.holtwinters import ExponentialSmoothing
from statsmodels.tsa.seasonal import MSTL

from forecasting import point_paths
from forecasting.model import ScalingGoal
from forecasting.point_models import FittedPointModel, PointModel, PointPaths, calibrate
from forecasting.series import LoadSeries

DAY_SECONDS = 86400.0
WEEK_SECONDS = 7 * DAY_SECONDS
COARSE_STEP_SECONDS = 900.0
# A weekly component needs more than two weeks (MSTL drops a period that is not shorter than
# half the series): 15 days is 1,440 points on the coarse grid. Older data only costs time.
FIT_SECONDS = 2 * WEEK_SECONDS + DAY_SECONDS
MAX_MISSING_SHARE = 0.5
# Same smoothing of the level as the EWMA baseline: 2 minutes.
HALFLIFE_SECONDS = 120.0
# STL smoothers evaluated every 4th point and interpolated: ~4x cheaper (36 ms -> 10 ms for a
# week at 15 minutes on this machine); the shape is only used as a change over <= 30 minutes.
STL_JUMPS = {"seasonal_jump": 4, "trend_jump": 4, "low_pass_jump": 4}

# (gap-free coarse values, seasonal periods in coarse steps, shortest first) -> the seasonal
# component at every coarse step.
SeasonalFit = Callable[[np.ndarray, Sequence[int]], np.ndarray]


def holt_winters_seasonal(values: np.ndarray, periods: Sequence[int]) -> np.ndarray:
    """Additive Holt-Winters on the daily period (a weekly one would need 672 seasonal states
    on a 15-minute grid: too many to estimate from two weeks)."""
    model = ExponentialSmoothing(
        values, seasonal="add", seasonal_periods=periods[0], initialization_method="heuristic"
    )
    return np.asarray(model.fit().season)


def mstl_seasonal(values: np.ndarray, periods: Sequence[int]) -> np.ndarray:
    """MSTL with a daily period, and a weekly one given more than two weeks; components summed."""
    result = MSTL(values, periods=list(periods), iterate=1, stl_kwargs=STL_JUMPS).fit()
    seasonal = np.asarray(result.seasonal)
    return seasonal.sum(axis=1) if seasonal.ndim == 2 else seasonal


@dataclass(frozen=True, slots=True)
class SeasonalProfile:
    """The shape over one period: `profile_rps[k]` is its value for the coarse step
    [k*step, (k+1)*step) modulo the period, in seconds since the series start."""

    step_seconds: float
    profile_rps: np.ndarray

    def at(self, seconds: np.ndarray) -> np.ndarray:
        centres = (np.arange(len(self.profile_rps)) + 0.5) * self.step_seconds
        period = len(self.profile_rps) * self.step_seconds
        return np.interp(seconds, centres, self.profile_rps, period=period)


def learn_profile(visible: LoadSeries, seasonal_fit: SeasonalFit) -> SeasonalProfile | None:
    """Fit on the coarse grid; None when the history is too short, too gappy or does not fit."""
    factor = max(1, int(COARSE_STEP_SECONDS // visible.step_seconds))
    coarse = visible.resample(factor * visible.step_seconds) if factor > 1 else visible
    step = coarse.step_seconds
    day, week = max(2, round(DAY_SECONDS / step)), max(2, round(WEEK_SECONDS / step))
    first = max(0, len(coarse.values) - int(FIT_SECONDS / step))
    values = coarse.values[first:]
    if len(values) < 2 * day or np.mean(np.isnan(values)) > MAX_MISSING_SHARE:
        return None
    # Gaps are interpolated: the seasonal fits need a gap-free series.
    filled = pd.Series(values).interpolate(limit_direction="both").to_numpy()
    # MSTL drops (with a warning) any period that is not shorter than half the series.
    periods = (day, week) if len(values) > 2 * week else (day,)
    try:
        with warnings.catch_warnings():
            # Short or flat histories make the optimiser stop early: the fit is still usable.
            warnings.simplefilter("ignore", ConvergenceWarning)
            seasonal = seasonal_fit(filled, periods)
    except (ValueError, np.linalg.LinAlgError):
        return None
    longest = periods[-1]
    if len(seasonal) < longest or not np.all(np.isfinite(seasonal[-longest:])):
        return None
    # The last period of the component, placed by phase: coarse step j is phase (first + j) % P.
    profile = np.empty(longest)
    profile[(first + np.arange(len(seasonal) - longest, len(seasonal))) % longest] = seasonal[-longest:]
    return SeasonalProfile(step, profile)


@dataclass(frozen=True, slots=True)
class SeasonalShapeModel:
    name: str
    seasonal_fit: SeasonalFit
    min_history_seconds: float = 2 * DAY_SECONDS

    def paths_for(self, visible: LoadSeries) -> PointPaths:
        profile = learn_profile(visible, self.seasonal_fit)
        return point_paths.last_value if profile is None else shape_paths(profile, visible.step_seconds)

    def fit(self, history: LoadSeries, goal: ScalingGoal | None = None) -> FittedPointModel:
        visible = history.visible()
        profile = learn_profile(visible, self.seasonal_fit)
        if profile is None:
            fallback = PointModel(f"{self.name}:last_value", lambda _visible: point_paths.last_value)
            return fallback.fit(visible)
        paths = shape_paths(profile, visible.step_seconds)
        return FittedPointModel(self.name, paths, calibrate(visible, paths, self.min_history_seconds))


def shape_paths(profile: SeasonalProfile, step_seconds: float) -> PointPaths:
    return partial(
        point_paths.shape_change,
        shape_at=profile.at,
        step_seconds=step_seconds,
        halflife_steps=HALFLIFE_SECONDS / step_seconds,
    )

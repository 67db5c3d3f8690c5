"""LightGBM on lag, rolling, seasonal and time-of-day features, one booster per trained lead.

Targets are relative to the current smoothed level (y[t+h] / level - 1), so one model serves
a series whatever its scale. Fitted alone, boosters learn on the history before the last two
days and those two days calibrate the residual quantiles out of sample; as a candidate of `auto`
(`paths_for`) they learn on what the selector gives them, which stops before its holdout. Short
or mostly missing history falls back to last value.

Fitting is kept cheap so that `auto` can afford it per series: the lag / rolling features are
computed once and shared by the four leads' boosters (60, 300, 600, 1800 s); each booster is
30 rounds on 1,200 rows, 64 bins, half the rows per tree, one thread. bench/forecast_fit.py on
100 week-long series went from 10.89 s to 2.12 s (2 workers; figures in forecasting/README.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import pandas as pd

from forecasting import point_paths
from forecasting.model import ScalingGoal
from forecasting.point_models import (
    CALIBRATION_HORIZON_SECONDS,
    CALIBRATION_ORIGINS,
    FittedPointModel,
    PointModel,
    PointPaths,
    ResidualQuantiles,
    calibration_origins,
    horizon_steps_for,
    relative_errors,
    scale_floor,
)
from forecasting.series import LoadSeries

DAY_SECONDS = 86400.0
TRAINED_LEADS_SECONDS = (60.0, 300.0, 600.0, 1800.0)
HOLDOUT_SECONDS = 2 * DAY_SECONDS
MIN_TRAINING_SECONDS = 2 * DAY_SECONDS
TRAINING_ROWS = 1200
LAGS_STEPS = (0, 1, 2, 4, 9, 29)
# Cheap on purpose (see bench/forecast_fit.py): 30 rounds at a higher learning rate, 64 bins,
# half the rows per tree, one thread (the bench runs one process per core).
PARAMETERS = {
    "objective": "l1",
    "learning_rate": 0.15,
    "num_leaves": 15,
    "min_data_in_leaf": 40,
    "max_bin": 63,
    "bagging_fraction": 0.5,
    "bagging_freq": 1,
    "num_threads": 1,
    "verbose": -1,
    "deterministic": True,
    "seed": 1,
}
ROUNDS = 30
# Fewer known targets than this in the training window (a week-long outage inside a longer,
# half-known history) cannot grow one tree of min_data_in_leaf rows a side: last value instead.
MIN_TRAINING_TARGETS = 2 * PARAMETERS["min_data_in_leaf"]


@dataclass(frozen=True, slots=True)
class BoostedPaths:
    """Point paths from one booster per trained lead, linear in between."""

    step_seconds: float
    lead_steps: tuple[int, ...]
    boosters: tuple[lgb.Booster, ...]

    def __call__(self, values: np.ndarray, origins: np.ndarray, horizon_steps: int) -> np.ndarray:
        frame = Features(values, self.step_seconds)
        level = frame.level(origins)
        by_lead = np.column_stack(
            [
                booster.predict(frame.rows(origins, lead), num_threads=1)
                for booster, lead in zip(self.boosters, self.lead_steps, strict=True)
            ]
        )
        leads = np.arange(1, horizon_steps + 1)
        relative = np.array([np.interp(leads, self.lead_steps, row) for row in by_lead])
        return np.maximum(level[:, None] * (1 + relative), 0.0)


class Features:
    """Features at origins: everything is read strictly before the origin."""

    def __init__(self, values: np.ndarray, step_seconds: float) -> None:
        self.step_seconds = step_seconds
        self.filled = point_paths.forward_fill(values)
        halflife = max(120.0 / step_seconds, 0.1)
        series = pd.Series(values)
        self.smoothed = point_paths.forward_fill(
            series.ewm(halflife=halflife, ignore_na=True).mean().to_numpy()
        )
        hour_steps = max(1, round(3600 / step_seconds))
        self.hourly = point_paths.forward_fill(series.rolling(hour_steps, min_periods=1).mean().to_numpy())
        self.period = max(1, round(DAY_SECONDS / step_seconds))

    def level(self, origins: np.ndarray) -> np.ndarray:
        return np.maximum(self.smoothed[np.clip(origins - 1, 0, None)], 1e-9)

    def rows(self, origins: np.ndarray, lead: int) -> np.ndarray:
        level = self.level(origins)
        last = len(self.filled) - 1
        columns = [self.filled[np.clip(origins - 1 - lag, 0, last)] / level for lag in LAGS_STEPS]
        columns.append(self.hourly[np.clip(origins - 1, 0, last)] / level)
        # What the same hour did yesterday over this lead, relative to yesterday's level.
        anchor = origins - self.period - 1
        target = anchor + lead
        seasonal = self.smoothed[np.clip(target, 0, last)] / np.maximum(
            self.smoothed[np.clip(anchor, 0, last)], 1e-9
        )
        columns.append(np.where(anchor >= 0, seasonal - 1, np.nan))
        seconds_of_day = (origins * self.step_seconds) % DAY_SECONDS
        columns += [
            np.sin(2 * np.pi * seconds_of_day / DAY_SECONDS),
            np.cos(2 * np.pi * seconds_of_day / DAY_SECONDS),
        ]
        return np.column_stack(columns)


@dataclass(frozen=True, slots=True)
class GradientBoosting:
    name: str = "lightgbm"
    min_history_seconds: float = MIN_TRAINING_SECONDS

    def paths_for(self, visible: LoadSeries) -> PointPaths:
        """Boosters trained on the whole of `visible` (the selector holds out its own origins)."""
        values = visible.values
        if len(values) * visible.step_seconds < MIN_TRAINING_SECONDS or np.mean(np.isnan(values)) > 0.5:
            return point_paths.last_value
        paths = boosted_paths(values, visible.step_seconds)
        return point_paths.last_value if paths is None else paths

    def fit(self, history: LoadSeries, goal: ScalingGoal | None = None) -> FittedPointModel:
        visible = history.visible()
        values, step = visible.values, visible.step_seconds
        holdout = int(HOLDOUT_SECONDS / step)
        if len(values) * step < MIN_TRAINING_SECONDS + HOLDOUT_SECONDS or np.mean(np.isnan(values)) > 0.5:
            return _last_value_fallback(visible, self.name)
        paths = boosted_paths(values[:-holdout], step)
        if paths is None:
            return _last_value_fallback(visible, self.name)
        horizon = horizon_steps_for(CALIBRATION_HORIZON_SECONDS, step)
        floor = scale_floor(values)
        origins = calibration_origins(len(values), len(values) - holdout, CALIBRATION_ORIGINS, horizon)
        return FittedPointModel(
            self.name,
            paths,
            ResidualQuantiles(relative_errors(paths, values, origins, horizon, floor), floor),
        )


def boosted_paths(values: np.ndarray, step_seconds: float) -> BoostedPaths | None:
    """One booster per trained lead; None when a lead has too few known targets to train on."""
    lead_steps = tuple(sorted({horizon_steps_for(lead, step_seconds) for lead in TRAINED_LEADS_SECONDS}))
    # Features are computed once and shared by the boosters of every lead.
    features = Features(values, step_seconds)
    boosters = []
    for lead in lead_steps:
        booster = train(features, values, step_seconds, lead)
        if booster is None:
            return None
        boosters.append(booster)
    return BoostedPaths(step_seconds, lead_steps, tuple(boosters))


def train(features: Features, values: np.ndarray, step_seconds: float, lead: int) -> lgb.Booster | None:
    first = max(1, len(values) - int(7 * DAY_SECONDS / step_seconds))
    origins = np.unique(np.linspace(first, len(values) - lead, TRAINING_ROWS).astype(int))
    target = features.filled[origins + lead - 1] / features.level(origins) - 1
    known = ~np.isnan(values[origins + lead - 1])
    if known.sum() < MIN_TRAINING_TARGETS:
        return None
    data = lgb.Dataset(
        features.rows(origins[known], lead), target[known], params={"verbose": -1, "num_threads": 1}
    )
    return lgb.train(PARAMETERS, data, num_boost_round=ROUNDS)


def _last_value_fallback(visible: LoadSeries, name: str) -> FittedPointModel:
    fitted = PointModel("last_value", lambda _visible: point_paths.last_value).fit(visible)
    return FittedPointModel(f"{name}:last_value", fitted.point_paths, fitted.residuals)

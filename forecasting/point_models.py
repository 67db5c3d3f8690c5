"""Forecasters built from a point path plus empirical (conformal) residual quantiles.

Fitting replays the model at recent past origins of the same series and keeps, per lead, the
relative errors it made; predicting adds their quantiles to today's point path. Any point model
thus gets quantiles calibrated on its own recent mistakes, and fitting costs one vectorised call.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from forecasting.forecast import Forecast
from forecasting.model import ScalingGoal
from forecasting.scores import trailing_relative_error
from forecasting.series import LoadSeries

# values, origins, horizon_steps -> one point path per origin.
PointPaths = Callable[[np.ndarray, np.ndarray, int], np.ndarray]
# visible history -> PointPaths: seasonal periods become steps, and seasonal shapes are learned,
# at fit time.
PathsFor = Callable[[LoadSeries], PointPaths]

CALIBRATION_ORIGINS = 96
# Leads beyond this share the residuals of the last calibrated lead: pre-warming needs 30 min at most.
CALIBRATION_HORIZON_SECONDS = 1800.0
# History a prediction reads: the weekly seasonal model needs a week plus the horizon.
LOOKBACK_SECONDS = 8 * 86400.0
# The history is cut at a whole number of weeks from its start, so that a shape learned on the
# whole history (indexed by time since the series start) keeps its phase.
WEEK_SECONDS = 7 * 86400.0
# Forecast trust is judged on the newest origins, one prediction horizon each: at 1-minute steps
# and a 5-step horizon, the last 30 origins cover the last ~35 minutes.
TRUST_ORIGINS = 30


def horizon_steps_for(lead_seconds: float, step_seconds: float) -> int:
    """Steps needed to cover a lead; a lead shorter than a step rounds up to one step
    (a 60 s lead on a 600 s series is the first step)."""
    return max(1, math.ceil(lead_seconds / step_seconds - 1e-9))


@dataclass(frozen=True, slots=True)
class ResidualQuantiles:
    """Relative errors (actual - point) / scale, one column per lead, rows are past origins."""

    relative_errors: np.ndarray
    scale_floor_rps: float
    # Quantiles of the errors per lead, by requested quantiles: the control loop predicts every
    # tick with the same fitted model and quantiles, and nanquantile was 2/3 of a tick's cost.
    _offsets: dict[tuple[float, ...], np.ndarray] = field(default_factory=dict, compare=False, repr=False)

    def paths(self, points: np.ndarray, quantiles: Sequence[float]) -> dict[float, np.ndarray]:
        """Quantile paths around `points` (one path, or a matrix with one path per row)."""
        horizon = points.shape[-1]
        leads = np.minimum(np.arange(horizon), max(0, self.relative_errors.shape[1] - 1))
        # The floor keeps the spread alive when the point is ~0: 1% of the mean load.
        scale = np.maximum(points, self.scale_floor_rps)
        ordered = tuple(sorted(quantiles))
        offsets = self._offsets_at(ordered)[:, leads]
        # Every quantile in one numpy call (a quantile per leading axis): one call per quantile
        # was a tenth of a tick's prediction with the objective's 13 quantiles.
        offsets = offsets.reshape(len(ordered), *(1,) * (points.ndim - 1), horizon)
        paths = np.maximum(points + offsets * scale, 0.0)
        return dict(zip(ordered, paths, strict=True))

    def _offsets_at(self, ordered: tuple[float, ...]) -> np.ndarray:
        """(quantile, lead) matrix of error quantiles; zeros when no error is known."""
        offsets = self._offsets.get(ordered)
        if offsets is None:
            errors = self.relative_errors
            if len(errors) and not np.all(np.isnan(errors)):
                offsets = np.nan_to_num(np.nanquantile(errors, ordered, axis=0))
            else:
                offsets = np.zeros((len(ordered), max(1, errors.shape[1])))
            self._offsets[ordered] = offsets
        return offsets


@lru_cache(maxsize=1024)
def calibration_origins(length: int, min_history: int, count: int, horizon: int) -> np.ndarray:
    """Up to `count` evenly spaced past origins whose whole horizon is inside the history.

    Cached, read-only: every tick of every workload asks again with the same length, and the
    linspace/unique pair was a tenth of a prediction."""
    last = length - horizon
    if last <= min_history:
        origins = np.empty(0, dtype=int)
    else:
        first = max(min_history, last - count * max(1, horizon // 2))
        origins = np.unique(np.linspace(first, last, num=min(count, last - first + 1)).astype(int))
    origins.setflags(write=False)
    return origins


def relative_errors(
    point_paths: PointPaths, values: np.ndarray, origins: np.ndarray, horizon: int, floor: float
) -> np.ndarray:
    if len(origins) == 0:
        return np.empty((0, horizon))
    points = point_paths(values, origins, horizon)
    return (_actuals(values, origins, horizon) - points) / np.maximum(points, floor)


def _actuals(values: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
    """What happened over `horizon` steps from each origin: one row per origin."""
    return values[origins[:, None] + np.arange(horizon)[None, :]]


def scale_floor(values: np.ndarray) -> float:
    known = values[~np.isnan(values)]
    return max(0.01 * float(np.mean(known)), 1e-9) if len(known) else 1e-9


@dataclass(frozen=True, slots=True)
class FittedPointModel:
    name: str
    point_paths: PointPaths
    residuals: ResidualQuantiles

    def predict(self, history: LoadSeries, horizon_steps: int, quantiles: Sequence[float]) -> Forecast:
        visible = history.visible()
        lookback = int(LOOKBACK_SECONDS / visible.step_seconds) + horizon_steps
        week_steps = max(1, round(WEEK_SECONDS / visible.step_seconds))
        dropped = max(0, len(visible.values) - lookback)
        first = dropped - dropped % week_steps
        if first > 0 and np.isnan(visible.values[first:]).all():
            # Every known value is older than the lookback (a long outage): start at the week
            # holding the newest one, so the paths carry it on instead of being NaN.
            known = np.flatnonzero(~np.isnan(visible.values))
            if known.size:
                first = known[-1] - known[-1] % week_steps
        values = visible.values[first:]
        if not len(values):
            return _unknown(visible, horizon_steps, quantiles, self.name)
        # One call serves the forecast (the last origin, now) and forecast trust (the newest
        # origins whose horizon is already known): the point functions forward-fill the whole
        # history on every call, which is most of a prediction's cost.
        scored = calibration_origins(len(values), 1, TRUST_ORIGINS, horizon_steps)
        points = self.point_paths(values, np.append(scored, len(values)), horizon_steps)
        return Forecast(
            start=visible.end,
            step_seconds=visible.step_seconds,
            quantiles=self.residuals.paths(points[-1], quantiles),
            model=self.name,
            trailing_error=_trailing_error(values, scored, points[:-1]),
        )


def _unknown(visible: LoadSeries, horizon_steps: int, quantiles: Sequence[float], name: str) -> Forecast:
    """No history at all: NaN paths, which decide() reads as no forecast (missing, never 0)."""
    paths = {q: np.full(horizon_steps, np.nan) for q in sorted(quantiles)}
    return Forecast(visible.end, visible.step_seconds, paths, name, trailing_error=None)


def _trailing_error(values: np.ndarray, origins: np.ndarray, points: np.ndarray) -> float | None:
    """Relative error of the point paths at past `origins` against what happened: what decide()
    turns into forecast trust. None (trusted) when the history is too short to score."""
    if len(origins) == 0:
        return None
    actual = _actuals(values, origins, points.shape[1])
    return trailing_relative_error(points.ravel(), actual.ravel(), points.size)


@dataclass(frozen=True, slots=True)
class PointModel:
    """A Forecaster from a point-path function; `min_history_seconds` is what it needs to be
    worth calibrating (shorter history still fits: the point functions fall back to flat)."""

    name: str
    paths_for: PathsFor
    min_history_seconds: float = 0.0

    def fit(self, history: LoadSeries, goal: ScalingGoal | None = None) -> FittedPointModel:
        visible = history.visible()
        point_paths = self.paths_for(visible)
        return FittedPointModel(
            self.name, point_paths, calibrate(visible, point_paths, self.min_history_seconds)
        )


def calibrate(visible: LoadSeries, point_paths: PointPaths, min_history_seconds: float) -> ResidualQuantiles:
    """Relative errors of `point_paths` at up to CALIBRATION_ORIGINS recent past origins."""
    horizon = horizon_steps_for(CALIBRATION_HORIZON_SECONDS, visible.step_seconds)
    values = visible.values
    floor = scale_floor(values)
    min_history = max(1, int(min_history_seconds / visible.step_seconds))
    origins = calibration_origins(len(values), min_history, CALIBRATION_ORIGINS, horizon)
    if len(origins) < 8:
        # Too short to replay the model: one-step changes of the whole history, the spread
        # of a random walk, are a wider and safer stand-in than no spread at all.
        origins = calibration_origins(len(values), 1, len(values), 1)
        errors = relative_errors(point_paths, values, origins, 1, floor)
        return ResidualQuantiles(errors[~np.isnan(errors).all(axis=1)], floor)
    errors = relative_errors(point_paths, values, origins, horizon, floor)
    return ResidualQuantiles(errors, floor)

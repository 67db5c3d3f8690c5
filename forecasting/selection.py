"""The `auto` forecaster: per series, pick the candidate with the lowest pinball loss on a
recent holdout of that same series, falling back to last value when nothing beats it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from forecasting.point_models import (
    CALIBRATION_ORIGINS,
    FittedPointModel,
    PointPaths,
    ResidualQuantiles,
    calibrate,
    calibration_origins,
    horizon_steps_for,
    relative_errors,
    scale_floor,
)
from forecasting.scores import pinball_loss
from forecasting.series import LoadSeries

SCORED_QUANTILES = (0.5, 0.9)
# Leads a cold start needs covered: scoring only these keeps a model that is good at 30 minutes
# but worse in the next few minutes from being chosen.
SCORED_LEAD_SECONDS = 600.0
MIN_HOLDOUT_ORIGINS = 16


class Candidate(Protocol):
    """A model `auto` can choose: a point path learned from a history, plus its calibration need."""

    @property
    def name(self) -> str: ...

    @property
    def min_history_seconds(self) -> float: ...

    def paths_for(self, visible: LoadSeries) -> PointPaths: ...


@dataclass(frozen=True, slots=True)
class SelectBest:
    """Each candidate learns its point path once, on the history before the holdout; every
    candidate is scored on the same origins, the newest half of the holdout, with residual
    quantiles from the older half, so the score is out of sample. The winner keeps that path
    (learnt before the holdout; it still starts from the newest level) and is recalibrated on
    the whole history: one fit per candidate, which is what keeps statsmodels affordable here.
    The first candidate is the fallback (and wins ties): keep last value first."""

    candidates: Sequence[Candidate]
    name: str = "auto"

    def fit(self, history: LoadSeries) -> FittedPointModel:
        visible = history.visible()
        horizon = horizon_steps_for(SCORED_LEAD_SECONDS, visible.step_seconds)
        needs = [_min_history_steps(candidate, visible) for candidate in self.candidates]
        # Too short to hold out: only the fallback (first) candidate can win.
        eligible = [
            len(calibration_origins(len(visible.values), need, 2 * CALIBRATION_ORIGINS, horizon))
            >= MIN_HOLDOUT_ORIGINS
            for need in needs
        ]
        best, best_paths, best_score = self.candidates[0], None, float("inf")
        if any(eligible):
            # One set of origins, after the longest history any eligible candidate needs: scored
            # on different stretches, scores would not compare.
            longest = max(need for need, ok in zip(needs, eligible, strict=True) if ok)
            origins = calibration_origins(len(visible.values), longest, 2 * CALIBRATION_ORIGINS, horizon)
            # Learnt before the holdout, so neither half of it was seen in training.
            learnt_on = visible.until(visible.start + origins[0] * visible.step_seconds)
            for index, candidate in enumerate(self.candidates):
                if not eligible[index]:
                    continue
                paths = candidate.paths_for(learnt_on)
                score = holdout_score(paths, visible.values, origins, horizon)
                if score < best_score or (index == 0 and not np.isfinite(best_score)):
                    best, best_paths, best_score = candidate, paths, score
        if best_paths is None:
            best_paths = best.paths_for(visible)
        residuals = calibrate(visible, best_paths, best.min_history_seconds)
        return FittedPointModel(f"{self.name}:{best.name}", best_paths, residuals)


def _min_history_steps(candidate: Candidate, visible: LoadSeries) -> int:
    return max(1, int(candidate.min_history_seconds / visible.step_seconds))


def holdout_score(paths: PointPaths, values: np.ndarray, origins: np.ndarray, horizon: int) -> float:
    """Mean pinball loss (rps) at SCORED_QUANTILES over the first `horizon` steps at the newer
    half of `origins`, with residual quantiles from the older half."""
    floor = scale_floor(values)
    older, newer = origins[: len(origins) // 2], origins[len(origins) // 2 :]
    residuals = ResidualQuantiles(relative_errors(paths, values, older, horizon, floor), floor)
    points = paths(values, newer, horizon)
    actual = values[newer[:, None] + np.arange(horizon)[None, :]]
    quantile_paths = residuals.paths(points, SCORED_QUANTILES)
    losses = [pinball_loss(actual, quantile_paths[q], q) for q in SCORED_QUANTILES]
    finite = [loss for loss in losses if np.isfinite(loss)]
    return float(np.mean(finite)) if finite else float("inf")

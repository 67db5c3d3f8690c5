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
        origins = self._holdout(visible, horizon)
        best, best_paths, best_score = self.candidates[0], None, float("inf")
        for index, candidate in enumerate(self.candidates):
            if origins is None or not self._can_hold_out(candidate, visible, horizon):
                # Too short to hold out: only the fallback (first) candidate can win.
                continue
            # Learnt before the holdout, so neither half of it was seen in training.
            learnt_on = visible.until(visible.start + origins[0] * visible.step_seconds)
            paths = candidate.paths_for(learnt_on)
            score = holdout_score(paths, visible.values, origins, horizon)
            if score < best_score or (index == 0 and not np.isfinite(best_score)):
                best, best_paths, best_score = candidate, paths, score
        if best_paths is None:
            best_paths = best.paths_for(visible)
        residuals = calibrate(visible, best_paths, best.min_history_seconds)
        return FittedPointModel(f"{self.name}:{best.name}", best_paths, residuals)

    def _holdout(self, visible: LoadSeries, horizon: int) -> np.ndarray | None:
        """One set of origins for every candidate that can hold out, after the longest history
        any of them needs: scored on different stretches, scores would not compare."""
        needs = [
            _min_history_steps(c, visible) for c in self.candidates if self._can_hold_out(c, visible, horizon)
        ]
        if not needs:
            return None
        return calibration_origins(len(visible.values), max(needs), 2 * CALIBRATION_ORIGINS, horizon)

    @staticmethod
    def _can_hold_out(candidate: Candidate, visible: LoadSeries, horizon: int) -> bool:
        own = calibration_origins(
            len(visible.values), _min_history_steps(candidate, visible), 2 * CALIBRATION_ORIGINS, horizon
        )
        return len(own) >= MIN_HOLDOUT_ORIGINS


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

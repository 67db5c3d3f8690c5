"""Forecast: quantile paths of request rate on a regular grid starting at `start`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True, eq=False)
class Forecast:
    """`quantiles[q][i]` is the q-quantile of the mean request rate (requests per second) over
    [start + i*step_seconds, start + (i+1)*step_seconds). Quantiles are probabilities (0.5, 0.9).

    `trailing_error` is the forecast's recent relative error (mean absolute error over recent
    steps divided by mean actual), attached by whoever scored past forecasts; None when unscored.
    `maturity` is the share of the history its model reads that the forecast had behind it: a
    model that reads the last hour, asked 20 minutes after the first known value, reports 1/3;
    1.0 for a model that reads no fixed span.
    """

    start: float
    step_seconds: float
    quantiles: Mapping[float, np.ndarray]
    model: str = ""
    trailing_error: float | None = None
    maturity: float = 1.0

    def __post_init__(self) -> None:
        if not self.quantiles:
            raise ValueError("a forecast needs at least one quantile path")
        lengths = {len(path) for path in self.quantiles.values()}
        if len(lengths) != 1:
            raise ValueError(f"quantile paths differ in length: {sorted(lengths)}")
        if self.step_seconds <= 0:
            raise ValueError(f"step_seconds={self.step_seconds!r} must be > 0")
        if not 0.0 <= self.maturity <= 1.0:
            raise ValueError(f"maturity={self.maturity!r} must be within [0, 1]")

    @property
    def horizon_steps(self) -> int:
        return len(next(iter(self.quantiles.values())))

    @property
    def end(self) -> float:
        return self.start + self.horizon_steps * self.step_seconds

    def path(self, quantile: float) -> np.ndarray:
        """The path at `quantile`, or at the nearest higher quantile present (the safer side);
        the highest present if none is higher."""
        available = sorted(self.quantiles)
        chosen = next((q for q in available if q >= quantile - 1e-12), available[-1])
        return np.asarray(self.quantiles[chosen], dtype=float)

    def peak(self, since: float, until: float, quantile: float) -> float | None:
        """Largest forecast rate over the steps that overlap [since, until]; None when the
        forecast does not cover that span or every value there is NaN."""
        first = math.floor((since - self.start) / self.step_seconds)
        last = math.floor((until - self.start) / self.step_seconds)
        first, last = max(first, 0), min(last, self.horizon_steps - 1)
        if last < first:
            return None
        window = self.path(quantile)[first : last + 1]
        # max() first: nanmax and the all-NaN check cost three times as much, on every tick of
        # every workload, for the gaps that are rare.
        top = float(window.max())
        if math.isnan(top):
            if np.all(np.isnan(window)):
                return None
            top = float(np.nanmax(window))
        return top

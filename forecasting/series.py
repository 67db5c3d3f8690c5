"""LoadSeries: a workload's request rate on a regular grid, gaps as NaN."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True, eq=False)
class LoadSeries:
    """`values[i]` is the mean request rate (requests per second) over
    [start + i*step_seconds, start + (i+1)*step_seconds). Missing steps are NaN.

    `cutoff` is the end of the last step that may be used (exclusive), so a model handed this
    series cannot see anything at or after it. It defaults to the end of the values.
    """

    start: float
    step_seconds: float
    values: np.ndarray
    cutoff: float | None = None

    def __post_init__(self) -> None:
        if self.step_seconds <= 0:
            raise ValueError(f"step_seconds={self.step_seconds!r} must be > 0")
        values = np.asarray(self.values, dtype=float)
        if values.ndim != 1:
            raise ValueError(f"values must be one-dimensional, got shape {values.shape}")
        object.__setattr__(self, "values", values)
        if self.cutoff is None:
            object.__setattr__(self, "cutoff", self.end)

    @property
    def end(self) -> float:
        """Time just after the last step."""
        return self.start + len(self.values) * self.step_seconds

    def times(self) -> np.ndarray:
        return self.start + self.step_seconds * np.arange(len(self.values))

    def visible(self) -> LoadSeries:
        """The part of the series before the cutoff (what a forecaster may use)."""
        assert self.cutoff is not None
        seen = (self.cutoff - self.start) / self.step_seconds
        if seen >= len(self.values):
            return self  # all of it: every tick of every workload asks, and copies cost
        keep = int(np.clip(np.floor(seen), 0, len(self.values)))
        return LoadSeries(self.start, self.step_seconds, self.values[:keep], self.cutoff)

    def until(self, cutoff: float) -> LoadSeries:
        """The same series seen from `cutoff`: later steps are dropped."""
        return LoadSeries(self.start, self.step_seconds, self.values, cutoff).visible()

    def resample(self, step_seconds: float) -> LoadSeries:
        """Aggregate to a coarser step that is a whole multiple of this one (mean of known values)."""
        factor = round(step_seconds / self.step_seconds)
        if factor < 1 or abs(factor * self.step_seconds - step_seconds) > 1e-9:
            raise ValueError(f"step {step_seconds} is not a whole multiple of {self.step_seconds}")
        usable = (len(self.values) // factor) * factor
        blocks = self.values[:usable].reshape(-1, factor)
        with np.errstate(invalid="ignore"):
            known = np.sum(~np.isnan(blocks), axis=1)
            means = np.where(known > 0, np.nansum(blocks, axis=1) / np.maximum(known, 1), np.nan)
        end = self.start + usable * self.step_seconds
        cutoff = end if self.cutoff is None else min(self.cutoff, end)
        return LoadSeries(self.start, step_seconds, means, cutoff)

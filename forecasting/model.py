"""The Forecaster protocol every model implements (one registry lists them all).

Fitting is the expensive part and runs on a schedule; predicting is cheap and runs every tick
with the newest history, so a model fitted an hour ago still starts from the current level.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from forecasting.forecast import Forecast
from forecasting.series import LoadSeries


class FittedForecaster(Protocol):
    def predict(self, history: LoadSeries, horizon_steps: int, quantiles: Sequence[float]) -> Forecast:
        """Forecast the `horizon_steps` steps that follow `history.visible()`, on its grid, using
        what was learned at fit time and only data before `history.cutoff`. Never raises on short
        or gappy history: falls back to a baseline instead."""
        ...


class Forecaster(Protocol):
    name: str

    def fit(self, history: LoadSeries) -> FittedForecaster:
        """Learn from the data before `history.cutoff`. Never raises on short or gappy history."""
        ...

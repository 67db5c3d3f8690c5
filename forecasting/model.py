"""The Forecaster protocol every model implements (one registry lists them all).

Fitting is the expensive part and runs on a schedule; predicting is cheap and runs every tick
with the newest history, so a model fitted an hour ago still starts from the current level.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from forecasting.forecast import Forecast
from forecasting.series import LoadSeries


@dataclass(frozen=True, slots=True)
class ScalingGoal:
    """What the forecast will size replicas for, for a model that chooses by cost
    (forecasting.selection.ChooseByObjective); models that learn one thing ignore it.

    At most `unserved_share` of demand may go unserved; replicas are held for `headroom` times
    the forecast peak over the next `lead_seconds` (1 / target utilization); `quantiles` are the
    paths the policy may read. Example: 0.001, headroom 1 / 0.7, lead 150 s."""

    unserved_share: float
    headroom: float
    lead_seconds: float
    quantiles: tuple[float, ...]

    def __post_init__(self) -> None:
        checks = (
            ("unserved_share", self.unserved_share, 0 < self.unserved_share < 1, "in (0, 1)"),
            ("headroom", self.headroom, self.headroom > 0, "> 0"),
            ("lead_seconds", self.lead_seconds, self.lead_seconds >= 0, ">= 0"),
            ("quantiles", self.quantiles, len(self.quantiles) > 0, "not empty"),
        )
        for name, value, ok, allowed in checks:
            if not ok:
                raise ValueError(f"ScalingGoal {name}={value!r} must be {allowed}")


class FittedForecaster(Protocol):
    def predict(self, history: LoadSeries, horizon_steps: int, quantiles: Sequence[float]) -> Forecast:
        """Forecast the `horizon_steps` steps that follow `history.visible()`, on its grid, using
        what was learned at fit time and only data before `history.cutoff`. Never raises on short
        or gappy history: falls back to a baseline instead."""
        ...


class Forecaster(Protocol):
    name: str

    def fit(self, history: LoadSeries, goal: ScalingGoal | None = None) -> FittedForecaster:
        """Learn from the data before `history.cutoff`, for `goal` where the model chooses by it
        (None: no goal known). Never raises on short or gappy history."""
        ...

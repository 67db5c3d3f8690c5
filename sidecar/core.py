"""The pure functions the shell drives (decide, the model registry, the cold-start estimator),
bundled so each composition root names every dependency it hands to the control loop."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from autoscaler.cold_start import estimate_cold_start
from autoscaler.decide import decide
from forecasting.registry import MODELS
from sidecar.control_loop import DecideFunction, ModelRegistry

COLD_START_QUANTILE = 0.9


@dataclass(frozen=True, slots=True)
class Core:
    decide: DecideFunction
    models: ModelRegistry
    estimate_cold_start: Callable[[Sequence[tuple[float, float]]], float | None]


def load_core() -> Core:
    """The real core; the registry imports a model's heavy library only when the model is built."""

    def estimate(pairs: Sequence[tuple[float, float]]) -> float | None:
        return estimate_cold_start(pairs, quantile=COLD_START_QUANTILE, default_seconds=None)

    return Core(decide=decide, models=MODELS, estimate_cold_start=estimate)

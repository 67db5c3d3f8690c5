"""What a simulated autoscaler sees at each of its ticks, and the protocol it implements.

Every policy sees load only through a `MetricsPipeline` (scrape delay and averaging window), so
no policy but the oracle can react to demand it could not have measured yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from forecasting import LoadSeries


class MetricsPipeline(Protocol):
    def rate(self, now: float, window_seconds: float, delay_seconds: float) -> float | None:
        """Mean demand (requests per second) over [now - delay - window, now - delay];
        None when that span lies before the trace starts."""
        ...

    def history(
        self, now: float, step_seconds: float, delay_seconds: float, span_seconds: float | None = None
    ) -> LoadSeries:
        """Demand on a `step_seconds` grid, only steps ending at or before now - delay; with
        `span_seconds`, only the steps of that last span (same grid), so a tick costs O(span)."""
        ...


@dataclass(frozen=True, slots=True)
class ClusterView:
    """The simulated cluster at one tick.

    `spec_replicas` is what the autoscaler last asked for; `status_replicas` the pods that exist
    (ready or starting); `ready_replicas` those serving.
    """

    now: float
    spec_replicas: int
    status_replicas: int
    ready_replicas: int
    metrics: MetricsPipeline


class SimulatedAutoscaler(Protocol):
    """One policy under replay. `step` is called every `tick_seconds` and returns the desired
    spec.replicas; implementations keep their own state between calls."""

    name: str
    tick_seconds: float

    def step(self, view: ClusterView) -> int: ...

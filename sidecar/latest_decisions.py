"""LatestDecisions: the one hand-over point between the control loop (one writer) and the
servers and telemetry (many readers). Readers never trigger a query or a computation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from autoscaler import CostBasis, Decision, Observations
from autoscaler.capacity import CapacityEstimate
from forecasting import Forecast


@dataclass(frozen=True, slots=True)
class PublishedDecision:
    """One workload's newest decision with what it was made from.

    `labels` are the workload's selectable labels (always `namespace` and `workload`, plus any
    configured ones such as `model`); `published_at` is the Unix time of publication.
    `learned_capacity` is what autoscaler.capacity has learned so far (None until it has enough
    pairs), whether or not the decision used it (only when the settings give no capacity).
    """

    namespace: str
    workload: str
    decision: Decision
    observations: Observations
    published_at: float
    forecast: Forecast | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    cost_basis: CostBasis | None = None
    learned_capacity: CapacityEstimate | None = None


class LatestDecisions:
    """Newest PublishedDecision per (namespace, workload). Writes replace whole immutable
    records, so a reader on the same event loop always sees a consistent one."""

    def __init__(self) -> None:
        self._items: dict[tuple[str, str], PublishedDecision] = {}

    def publish(self, item: PublishedDecision) -> None:
        self._items[(item.namespace, item.workload)] = item

    def get(self, namespace: str, workload: str) -> PublishedDecision | None:
        return self._items.get((namespace, workload))

    def all(self) -> list[PublishedDecision]:
        return list(self._items.values())

    def remove(self, namespace: str, workload: str) -> None:
        self._items.pop((namespace, workload), None)

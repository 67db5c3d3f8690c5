"""The metrics we publish and how each is read from a PublishedDecision.

Chosen so the consumer's own formula lands on our recommendation:
- `desired_replicas`: Decision.replicas. With an HPA `AverageValue` target of 1 the HPA computes
  ceil(desired / 1) = desired, e.g. 7 -> 7 replicas (KEDA: targetSize 1 does the same).
- `forecast_requests_per_second`: the forecast peak load (after trust and headroom) over the lead time.
  With an `AverageValue` target of the rps one replica should carry, replica_capacity_rps x
  target_utilization (the same division decide() makes), the HPA computes ceil(forecast / that),
  e.g. 130 rps at 20 rps x 0.7 = 14 rps per replica -> 10 replicas. A target of the bare capacity
  (20) would give 7, 0.7 x the recommendation.
A metric with no value yet (no forecast) is missing, never 0, so it can never scale a workload down.
KEDA's IsActive is `wants_active`, here rather than in the gRPC scaler so that the replay's KEDA
(simulator/consumer.py, driven by sidecar/replay_simulation.py) reads the very same answer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from sidecar.latest_decisions import PublishedDecision


class DecisionSource(Protocol):
    """What the servers read from the control loop's hand-over point (sidecar.LatestDecisions)."""

    def get(self, namespace: str, workload: str) -> PublishedDecision | None: ...

    def all(self) -> list[PublishedDecision]: ...


@dataclass(frozen=True, slots=True)
class PublishedMetric:
    name: str
    description: str
    read: Callable[[PublishedDecision], float | None]


def _desired_replicas(item: PublishedDecision) -> float | None:
    return float(item.decision.replicas)


def _forecast_rps(item: PublishedDecision) -> float | None:
    return item.decision.forecast_rps


def wants_active(item: PublishedDecision) -> bool:
    """KEDA's IsActive: the decision wants a replica. The core decides the 0-or-1 boundary
    (autoscaler.scale_to_zero): with min_replicas 0 it asks one replica a cold start ahead of
    forecast demand, so a workload at zero turns active before its first request, and it asks
    none only when neither the load nor the forecast is above the activation threshold. (A
    forecast above zero no longer counts by itself: a quantile of 0.001 rps kept a GPU warm.)"""
    return item.decision.replicas > 0


PUBLISHED_METRICS: Mapping[str, PublishedMetric] = {
    metric.name: metric
    for metric in (
        PublishedMetric(
            "desired_replicas",
            "Replica count the autoscaler recommends; use an AverageValue target of 1.",
            _desired_replicas,
        ),
        PublishedMetric(
            "forecast_requests_per_second",
            "Forecast peak requests per second over the lead time; use an AverageValue target of "
            "replica_capacity_rps x target_utilization.",
            _forecast_rps,
        ),
    )
}


def selectable_labels(item: PublishedDecision) -> dict[str, str]:
    """Labels a selector can match: the configured ones, with namespace and workload always true."""
    return {**item.labels, "namespace": item.namespace, "workload": item.workload}


def is_fresh(item: PublishedDecision, now: float, max_age_seconds: float) -> bool:
    return now - item.published_at <= max_age_seconds

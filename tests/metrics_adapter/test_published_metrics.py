"""The published metrics' guidance, checked through the faithful HPA simulator (simulator.hpa): an
HPA configured as documented lands on the decision the sidecar made."""

from __future__ import annotations

import numpy as np

from autoscaler import Observations, Reading
from autoscaler.decide import decide
from autoscaler.decision import DecisionState, Reason
from autoscaler.policy import ScalingPolicy
from forecasting.forecast import Forecast
from metrics_adapter.published_metrics import PUBLISHED_METRICS
from simulator.hpa import ExternalTarget, HpaSpec, HpaState, Scale, TargetType, hpa_sync

NOW = 1_800_000_000.0


def test_an_hpa_on_the_forecast_as_documented_lands_on_the_recommendation():
    """Found in review: the guidance said AverageValue = per-replica capacity, while decide()
    divides by capacity x target utilization, so such an HPA landed at ~0.7x."""
    policy = ScalingPolicy(replica_capacity_rps=20.0, target_utilization=0.7).validate()
    forecast = Forecast(NOW, 60.0, {q: np.full(30, 130.0) for q in policy.forecast_quantiles}, model="flat")
    observations = Observations(
        at=NOW, current_replicas=8, ready_replicas=8, load=Reading(40.0, NOW), cold_start_seconds=120.0
    )
    decision, _ = decide(NOW, observations, forecast, policy, DecisionState())
    assert (decision.replicas, decision.reason) == (10, Reason.FORECAST)
    served = PUBLISHED_METRICS["forecast_requests_per_second"]
    assert "replica_capacity_rps x target_utilization" in served.description

    def hpa_lands_on(average_value: float) -> int | None:
        spec = HpaSpec(
            metrics=(ExternalTarget(TargetType.AVERAGE_VALUE, average_value),),
            min_replicas=1,
            max_replicas=100,
        )
        result, _ = hpa_sync(NOW, spec, Scale(8, 8, 8), [[decision.forecast_rps]], HpaState())
        return result.proposal

    documented = policy.replica_capacity_rps * policy.target_utilization
    assert hpa_lands_on(documented) == decision.replicas
    assert hpa_lands_on(policy.replica_capacity_rps) == 7, "the old guidance: 0.7x the recommendation"

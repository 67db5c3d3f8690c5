"""KEDA as users configure it reactively: a ScaledObject with a Prometheus trigger on the request
rate, `minReplicaCount` from the run (0 scales to zero), no forecast anywhere.

The trigger's threshold is the rate one replica should carry (AverageValue), its
`activationThreshold` 0 (KEDA's default: any request at all is activity), the ScaledObject's
pollingInterval and cooldownPeriod those of deploy/examples/keda, and no `advanced` section, so
KEDA's HPA has no `behavior` (the controller's legacy path, as `hpa-legacy`). The scale loop and
its HPA are simulator/consumer.ConsumerKeda, the model the predictive policy's KEDA path runs:
the two differ only in what answers IsActive and the metric.
"""

from __future__ import annotations

from simulator.consumer import (
    COOLDOWN_PERIOD_SECONDS,
    POLLING_INTERVAL_SECONDS,
    ConsumerKeda,
    ScaledObjectSpec,
)
from simulator.hpa import ExternalTarget, HpaSpec, Scale, TargetType, check_rate_baseline
from simulator.view import ClusterView


class KedaAutoscaler:
    """The reactive KEDA ScaledObject for one workload under replay (a SimulatedAutoscaler)."""

    def __init__(
        self,
        target_rps_per_replica: float,
        min_replicas: int,
        max_replicas: int,
        *,
        activation_rps: float = 0.0,
        tick_seconds: float = 15.0,
        tolerance: float = 0.1,
        metrics_delay_seconds: float = 15.0,
        metrics_window_seconds: float = 60.0,
    ) -> None:
        check_rate_baseline(target_rps_per_replica, min_replicas, max_replicas)
        self.name = "keda"
        self.tick_seconds = tick_seconds
        self.activation_rps = activation_rps
        self.metrics_delay_seconds = metrics_delay_seconds
        self.metrics_window_seconds = metrics_window_seconds
        self.keda = ConsumerKeda(
            ScaledObjectSpec(
                min_replica_count=min_replicas,
                max_replica_count=max_replicas,
                polling_interval_seconds=POLLING_INTERVAL_SECONDS,
                cooldown_period_seconds=COOLDOWN_PERIOD_SECONDS,
                hpa=HpaSpec(
                    metrics=(ExternalTarget(TargetType.AVERAGE_VALUE, target_rps_per_replica),),
                    min_replicas=max(1, min_replicas),
                    max_replicas=max_replicas,
                    behavior=None,
                    tolerance=tolerance,
                ),
            )
        )

    def step(self, view: ClusterView) -> int:
        rate = view.metrics.rate(view.now, self.metrics_window_seconds, self.metrics_delay_seconds)
        # KEDA's Prometheus scaler: active when the value is above activationThreshold.
        active = None if rate is None else rate > self.activation_rps
        scale = Scale(view.spec_replicas, view.status_replicas, view.ready_replicas)
        return self.keda.sync(view.now, active, rate, scale)

"""The HPA that consumes our `desired_replicas` metric, configured as deploy/examples/hpa/hpa.yaml
configures it (a test holds the two equal): External metric, AverageValue target 1, minReplicas
and maxReplicas of the workload, scale-up and scale-down windows 0 with permissive rate limits,
synced every 15 s by the controller (`hpa_sync`, the same faithful HPA the baselines run).

The tolerance is the controller's: 0.1 by default (kube-controller-manager's
--horizontal-pod-autoscaler-tolerance), 0 where the cluster has the per-HPA
`behavior.scaleUp/scaleDown.tolerance` field (KEP-4951, Kubernetes 1.33+ behind the
HPAConfigurableTolerance gate) and the example sets it. At 0.1 a published change under 10 % of
the current pods is held: at 30 replicas, anything under three.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from autoscaler.policy import RatePolicy, RatePolicyType, ScalingRules, SelectPolicy
from simulator.hpa import (
    ExternalTarget,
    HpaBehavior,
    HpaResult,
    HpaSpec,
    HpaState,
    Scale,
    TargetType,
    hpa_sync,
)

SYNC_SECONDS = 15.0
DEFAULT_TOLERANCE = 0.1
CHAIN = (
    "ControlLoop -> LatestDecisions -> external metrics API desired_replicas -> "
    "HPA (External, AverageValue 1, deploy/examples/hpa behavior, {sync:g} s sync, tolerance {tolerance:g}) "
    "-> Deployment -> pods Ready after a drawn cold start"
)


def example_behavior() -> HpaBehavior:
    """deploy/examples/hpa/hpa.yaml's `behavior`: the sidecar already stabilized and rate-limited
    what it publishes, so the HPA adopts it at once."""
    return HpaBehavior(
        scale_up=ScalingRules(
            stabilization_window_seconds=0,
            select_policy=SelectPolicy.MAX,
            policies=(
                RatePolicy(RatePolicyType.PODS, 1000, 15),
                RatePolicy(RatePolicyType.PERCENT, 1000, 15),
            ),
        ),
        scale_down=ScalingRules(
            stabilization_window_seconds=0,
            select_policy=SelectPolicy.MAX,
            policies=(RatePolicy(RatePolicyType.PERCENT, 100, 15),),
        ),
    )


def example_hpa_spec(min_replicas: int, max_replicas: int, tolerance: float = DEFAULT_TOLERANCE) -> HpaSpec:
    return HpaSpec(
        metrics=(ExternalTarget(TargetType.AVERAGE_VALUE, 1.0),),
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        behavior=example_behavior(),
        tolerance=tolerance,
    )


def describe_chain(tolerance: float) -> str:
    return CHAIN.format(sync=SYNC_SECONDS, tolerance=tolerance)


@dataclass
class ConsumerHpa:
    """One HPA reading `desired_replicas`; `sync` is one reconcile, None when the metric is
    unavailable (no decision yet, or a stale one: the API answers 503 and the HPA holds)."""

    spec: HpaSpec
    state: HpaState = field(default_factory=HpaState)
    last_result: HpaResult | None = None

    def sync(self, now: float, desired_replicas: float | None, scale: Scale) -> int:
        values = None if desired_replicas is None else (desired_replicas,)
        self.last_result, self.state = hpa_sync(now, self.spec, scale, (values,), self.state)
        return self.last_result.desired_replicas

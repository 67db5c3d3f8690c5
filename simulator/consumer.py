"""The consumers of our `desired_replicas` metric in the replay, each configured as deploy/examples
configures it (tests hold each equal to its manifest):

- `ConsumerHpa`, deploy/examples/hpa/hpa.yaml: External metric, AverageValue target 1, minReplicas
  and maxReplicas of the workload, scale-up and scale-down windows 0 with permissive rate limits,
  synced every 15 s by the controller (`hpa_sync`, the same faithful HPA the baselines run).
- `ConsumerKeda`, deploy/examples/keda/scaledobject.yaml: KEDA's own scale loop (every
  pollingInterval it asks IsActive; with `external-push` it also acts on a pushed `true` at once)
  takes the target 0 -> 1 itself and back to 0 once nothing has been active for cooldownPeriod;
  between 1 and maxReplicaCount the HPA KEDA creates (minReplicas max(1, minReplicaCount), the
  example's behavior) follows GetMetrics. A failed fetch (no fresh decision) counts towards the
  fallback: from failureThreshold failures in a row the HPA is given fallback.replicas, and a
  target at zero is raised to them. The same class is the reactive KEDA baseline (simulator/
  keda.py) with a Prometheus trigger instead.

The tolerance is the controller's: 0.1 by default (kube-controller-manager's
--horizontal-pod-autoscaler-tolerance), 0 where the cluster has the per-HPA
`behavior.scaleUp/scaleDown.tolerance` field (KEP-4951, Kubernetes 1.33+ behind the
HPAConfigurableTolerance gate) and the example sets it. At 0.1 a published change under 10 % of
the current pods is held: at 30 replicas, anything under three.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

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


KEDA_CHAIN = (
    "ControlLoop -> LatestDecisions -> KEDA external scaler (IsActive, GetMetrics desired_replicas) -> "
    "KEDA ScaledObject (deploy/examples/keda: minReplicaCount {min}, pollingInterval {polling:g} s, "
    "external-push, cooldownPeriod {cooldown:g} s, fallback {fallback} after {threshold} failures; "
    "0 <-> 1 by KEDA) -> KEDA's HPA (External, AverageValue 1, the example's behavior, {sync:g} s sync, "
    "tolerance {tolerance:g}) -> Deployment -> pods Ready after a drawn cold start"
)
# deploy/examples/keda/scaledobject.yaml's timing and fallback.
POLLING_INTERVAL_SECONDS = 15.0
COOLDOWN_PERIOD_SECONDS = 300.0


def describe_chain(tolerance: float, consumer: str = "hpa", min_replicas: int = 1) -> str:
    if consumer == "keda":
        fallback = example_fallback()
        return KEDA_CHAIN.format(
            min=min_replicas,
            polling=POLLING_INTERVAL_SECONDS,
            cooldown=COOLDOWN_PERIOD_SECONDS,
            fallback=fallback.replicas,
            threshold=fallback.failure_threshold,
            sync=SYNC_SECONDS,
            tolerance=tolerance,
        )
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


@dataclass(frozen=True, slots=True)
class Fallback:
    """`spec.fallback`: after `failure_threshold` failed fetches in a row, hold `replicas`."""

    failure_threshold: int
    replicas: int


@dataclass(frozen=True, slots=True)
class ScaledObjectSpec:
    """What of a ScaledObject the replay models; `hpa` is the HPA KEDA creates for it
    (minReplicas max(1, minReplicaCount): KEDA, not the HPA, owns zero). `push`: a trigger is
    `external-push`, so a pushed `true` is acted on at once rather than at the next poll."""

    min_replica_count: int
    max_replica_count: int
    polling_interval_seconds: float
    cooldown_period_seconds: float
    hpa: HpaSpec
    fallback: Fallback | None = None
    push: bool = False


def example_fallback() -> Fallback:
    return Fallback(failure_threshold=3, replicas=4)


def example_keda_behavior() -> HpaBehavior:
    """The example's advanced.horizontalPodAutoscalerConfig.behavior (selectPolicy defaults to Max)."""
    return HpaBehavior(
        scale_up=ScalingRules(
            stabilization_window_seconds=0,
            select_policy=SelectPolicy.MAX,
            policies=(RatePolicy(RatePolicyType.PERCENT, 1000, 15),),
        ),
        scale_down=ScalingRules(
            stabilization_window_seconds=0,
            select_policy=SelectPolicy.MAX,
            policies=(RatePolicy(RatePolicyType.PERCENT, 100, 15),),
        ),
    )


def example_scaled_object(
    min_replicas: int, max_replicas: int, tolerance: float = DEFAULT_TOLERANCE
) -> ScaledObjectSpec:
    """deploy/examples/keda/scaledobject.yaml for a workload's bounds: its triggers return
    `desired_replicas` with targetSize 1 (metrics_adapter.keda_scaler's GetMetricSpec)."""
    return ScaledObjectSpec(
        min_replica_count=min_replicas,
        max_replica_count=max_replicas,
        polling_interval_seconds=POLLING_INTERVAL_SECONDS,
        cooldown_period_seconds=COOLDOWN_PERIOD_SECONDS,
        hpa=HpaSpec(
            metrics=(ExternalTarget(TargetType.AVERAGE_VALUE, 1.0),),
            min_replicas=max(1, min_replicas),
            max_replicas=max_replicas,
            behavior=example_keda_behavior(),
            tolerance=tolerance,
        ),
        fallback=example_fallback(),
        push=True,
    )


@dataclass
class ConsumerKeda:
    """One ScaledObject: KEDA's scale loop and the HPA it created. `sync` is called on the HPA's
    cadence (15 s) with what the scaler answers now: `active` (IsActive; None when the call
    failed) and `value` (GetMetrics; None when it failed); it returns the target's spec.replicas.

    Order within a call, as KEDA and the HPA controller act independently on one target: the
    scale loop first (0 -> 1 on activity, -> 0 after the cooldown), then the HPA, which holds a
    target at zero (its minReplicas is at least 1: ScalingDisabled).
    """

    spec: ScaledObjectSpec
    hpa: ConsumerHpa = field(init=False)
    last_active_at: float | None = None
    failures: int = 0
    next_poll: float = -math.inf

    def __post_init__(self) -> None:
        self.hpa = ConsumerHpa(self.spec.hpa)

    def sync(self, now: float, active: bool | None, value: float | None, scale: Scale) -> int:
        self.failures = 0 if value is not None else self.failures + 1
        replicas = scale.spec_replicas
        polled = now >= self.next_poll
        if polled:
            self.next_poll = now + self.spec.polling_interval_seconds
        if polled or (self.spec.push and active and replicas == 0):
            replicas = self._scale_loop(now, active, replicas)
        if replicas == 0:
            return 0
        fetched = self._fallback_value() if value is None else value
        return self.hpa.sync(now, fetched, replace(scale, spec_replicas=replicas))

    def _scale_loop(self, now: float, active: bool | None, replicas: int) -> int:
        """KEDA's RequestScale for one poll."""
        spec = self.spec
        if active:
            self.last_active_at = now
            return max(spec.min_replica_count, 1) if replicas == 0 else replicas
        fallback = spec.fallback
        if active is None:
            if fallback is not None and self.failures >= fallback.failure_threshold and replicas == 0:
                return fallback.replicas
            return replicas  # an error is never a reason to scale to zero
        quiet_since = self.last_active_at
        cooled = quiet_since is None or now - quiet_since > spec.cooldown_period_seconds
        if replicas > 0 and spec.min_replica_count == 0 and cooled:
            return 0
        return max(replicas, spec.min_replica_count)

    def _fallback_value(self) -> float | None:
        fallback = self.spec.fallback
        if fallback is None or self.failures < fallback.failure_threshold:
            return None
        (target,) = self.spec.hpa.metrics
        return fallback.replicas * target.quantity

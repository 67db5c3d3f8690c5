"""The Kubernetes HPA v2 controller, as faithful as a replay needs, for External metrics.

`hpa_sync` is one reconcile of one HPA (k8s-contract.md section 3.3) as a pure function: the
scale subresource and the metric values go in, the desired replicas and the status conditions
come out, and the controller's in-memory state (recommendations, scale events) is an explicit
frozen value. The behavior path reuses autoscaler/stabilization.py, the very rules the predictive
core applies, so both arms of a comparison share one implementation. `HpaAutoscaler` wraps it
for the replay: the External metric is the total request rate the metrics pipeline shows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from enum import StrEnum

from autoscaler.decision import Recommendation, ScaleEvent
from autoscaler.policy import ScalingRules, default_scale_down, default_scale_up
from autoscaler.stabilization import Limit, rate_limit, record_scale_event, stabilize
from simulator.view import ClusterView

MAX_INT32 = 2**31 - 1
MAX_INT64 = 2**63 - 1
LEGACY_DOWNSCALE_WINDOW_SECONDS = 300.0
LEGACY_SCALE_UP_FACTOR = 2.0
LEGACY_SCALE_UP_MINIMUM = 4.0


class TargetType(StrEnum):
    VALUE = "Value"
    AVERAGE_VALUE = "AverageValue"


class AbleToScale(StrEnum):
    READY_FOR_NEW_SCALE = "ReadyForNewScale"
    SCALE_UP_STABILIZED = "ScaleUpStabilized"
    SCALE_DOWN_STABILIZED = "ScaleDownStabilized"


class ScalingActive(StrEnum):
    VALID_METRIC_FOUND = "ValidMetricFound"
    FAILED_GET_EXTERNAL_METRIC = "FailedGetExternalMetric"
    SCALING_DISABLED = "ScalingDisabled"


@dataclass(frozen=True, slots=True)
class ExternalTarget:
    """One External metric of `spec.metrics`; `quantity` is the target as a decimal number."""

    type: TargetType
    quantity: float


@dataclass(frozen=True, slots=True)
class HpaBehavior:
    scale_up: ScalingRules = field(default_factory=default_scale_up)
    scale_down: ScalingRules = field(default_factory=default_scale_down)


@dataclass(frozen=True, slots=True)
class HpaSpec:
    """`behavior=None` is the legacy path (3.8); the API does not default a nil behavior."""

    metrics: tuple[ExternalTarget, ...]
    min_replicas: int
    max_replicas: int
    behavior: HpaBehavior | None = field(default_factory=HpaBehavior)
    tolerance: float = 0.1


@dataclass(frozen=True, slots=True)
class Scale:
    """The target's /scale subresource plus the ready pods its selector matches."""

    spec_replicas: int
    status_replicas: int
    ready_replicas: int


@dataclass(frozen=True, slots=True)
class HpaState:
    """The controller's memory of one HPA; None until the first sync (recordInitialRecommendation)."""

    recommendations: tuple[Recommendation, ...] | None = None
    scale_events: tuple[ScaleEvent, ...] = ()


@dataclass(frozen=True, slots=True)
class HpaResult:
    desired_replicas: int
    rescaled: bool
    able_to_scale: AbleToScale
    scaling_active: ScalingActive
    scaling_limited: Limit
    proposal: int | None = None


def milli_value(quantity: float) -> int:
    """Quantity.MilliValue(): milli-units rounded up, capped at int64. Decimal(repr) keeps the
    number the adapter would print: 2.007 rps is 2007m, where float 2.007 * 1000 = 2007.0000000000002
    would round up to 2008m."""
    return min(math.ceil(Decimal(repr(quantity)) * 1000), MAX_INT64)


def within_tolerance(ratio: float, tolerance: float) -> bool:
    """Inclusive band: with 0.1, ratios 0.9 and 1.1 both hold the count."""
    return (1 - tolerance) <= ratio <= (1 + tolerance)


def external_replicas(
    target: ExternalTarget, values: Sequence[float], scale: Scale, tolerance: float
) -> int | None:
    """Replicas one External metric proposes, or None when the controller would report an error.

    AverageValue divides by status.replicas (every pod, ready or not) and proposes
    ceil(total / per-pod target): 95 rps at 10 per pod -> 10. Value multiplies the ratio by READY
    pods: spec 10, ready 5, ratio 1.5 -> ceil(7.5) = 8, a scale-down under overload.
    """
    if not all(math.isfinite(v) for v in values):
        return None  # an unparseable sample is a failed fetch, never a number
    usage = min(sum(milli_value(v) for v in values), MAX_INT64)
    target_milli = milli_value(target.quantity)
    if target.type is TargetType.AVERAGE_VALUE:
        pods = scale.status_replicas
        ratio = usage / (target_milli * pods) if pods else (math.nan if usage == 0 else math.inf)
        if within_tolerance(ratio, tolerance):
            return pods
        return min(math.ceil(usage / target_milli), MAX_INT32)
    ratio = usage / target_milli
    if scale.spec_replicas == 0:
        return math.ceil(ratio)
    if within_tolerance(ratio, tolerance):
        return scale.spec_replicas
    if scale.status_replicas == 0:
        return None  # "no pods returned by selector while calculating replica count"
    return min(math.ceil(ratio * scale.ready_replicas), MAX_INT32)


def compute_replicas_for_metrics(
    spec: HpaSpec, scale: Scale, metric_values: Sequence[Sequence[float] | None]
) -> int | None:
    """Max over metrics; None (the controller's -1) when all failed, or when some failed and the
    valid ones would scale below spec.replicas: partial data never scales down."""
    replicas = 0
    invalid = 0
    for target, values in zip(spec.metrics, metric_values, strict=True):
        proposal = None if values is None else external_replicas(target, values, scale, spec.tolerance)
        if proposal is None:
            invalid += 1
        elif replicas == 0 or proposal > replicas:
            replicas = proposal
    if invalid == len(spec.metrics) or (invalid > 0 and replicas < scale.spec_replicas):
        return None
    return replicas


def hpa_sync(
    now: float,
    spec: HpaSpec,
    scale: Scale,
    metric_values: Sequence[Sequence[float] | None],
    state: HpaState,
) -> tuple[HpaResult, HpaState]:
    """One reconcileAutoscaler. `metric_values[i]` are the items returned for `spec.metrics[i]`,
    None when fetching them failed."""
    current = scale.spec_replicas
    if state.recommendations is None:
        state = replace(state, recommendations=(Recommendation(now, current),))
    ready = AbleToScale.READY_FOR_NEW_SCALE
    active = ScalingActive.VALID_METRIC_FOUND
    if current == 0 and spec.min_replicas != 0:
        hold = HpaResult(current, False, ready, ScalingActive.SCALING_DISABLED, Limit.WITHIN_RANGE)
        return hold, state
    if current > spec.max_replicas:
        return _rescale(now, spec, current, spec.max_replicas, ready, active, Limit.TOO_MANY, None, state)
    if current < spec.min_replicas:
        return _rescale(now, spec, current, spec.min_replicas, ready, active, Limit.TOO_FEW, None, state)
    proposal = compute_replicas_for_metrics(spec, scale, metric_values)
    if proposal is None:
        failed = ScalingActive.FAILED_GET_EXTERNAL_METRIC
        # No scaling and no recommendation stored: a failed fetch must not age the windows.
        return HpaResult(current, False, ready, failed, Limit.WITHIN_RANGE), state
    desired = max(0, proposal)
    recommendations = state.recommendations or ()
    if spec.behavior is None:
        legacy = _normalize_legacy(now, spec, current, desired, recommendations)
        normalized, able, limit, recommendations = legacy
    else:
        behavior = spec.behavior
        stabilized, recommendations = stabilize(
            now, desired, current, recommendations, behavior.scale_up, behavior.scale_down
        )
        able = ready
        if stabilized != desired:
            up = desired >= current
            able = AbleToScale.SCALE_UP_STABILIZED if up else AbleToScale.SCALE_DOWN_STABILIZED
        normalized, limit = rate_limit(
            now,
            stabilized,
            current,
            spec.min_replicas,
            spec.max_replicas,
            state.scale_events,
            behavior.scale_up,
            behavior.scale_down,
        )
    state = replace(state, recommendations=recommendations)
    return _rescale(now, spec, current, normalized, able, active, limit, proposal, state)


def _normalize_legacy(
    now: float, spec: HpaSpec, current: int, desired: int, recommendations: Sequence[Recommendation]
) -> tuple[int, AbleToScale, Limit, tuple[Recommendation, ...]]:
    """normalizeDesiredReplicas: the highest recommendation of the last 5 min (cutoff inclusive,
    unlike the behavior path), then a scale-up cap of max(2 * current, 4): 3 pods may reach 6."""
    cutoff = now - LEGACY_DOWNSCALE_WINDOW_SECONDS
    kept = tuple(r for r in recommendations if r.at >= cutoff)
    stabilized = max([desired, *(r.replicas for r in kept)])
    able = AbleToScale.SCALE_DOWN_STABILIZED if stabilized != desired else AbleToScale.READY_FOR_NEW_SCALE
    up_limit = int(max(LEGACY_SCALE_UP_FACTOR * current, LEGACY_SCALE_UP_MINIMUM))
    if spec.max_replicas > up_limit:
        max_allowed, up_reason = up_limit, Limit.SCALE_UP_LIMIT
    else:
        max_allowed, up_reason = spec.max_replicas, Limit.TOO_MANY
    if stabilized < spec.min_replicas:
        normalized, limit = spec.min_replicas, Limit.TOO_FEW
    elif stabilized > max_allowed:
        normalized, limit = max_allowed, up_reason
    else:
        normalized, limit = stabilized, Limit.WITHIN_RANGE
    return normalized, able, limit, (*kept, Recommendation(now, desired))


def _rescale(
    now: float,
    spec: HpaSpec,
    current: int,
    desired: int,
    able: AbleToScale,
    active: ScalingActive,
    limit: Limit,
    proposal: int | None,
    state: HpaState,
) -> tuple[HpaResult, HpaState]:
    """Publish `desired` if it differs; only the behavior path remembers scale events."""
    rescaled = desired != current
    if rescaled and spec.behavior is not None:
        events = record_scale_event(
            now, current, desired, state.scale_events, spec.behavior.scale_up, spec.behavior.scale_down
        )
        state = replace(state, scale_events=events)
    return HpaResult(desired, rescaled, able, active, limit, proposal), state


class HpaAutoscaler:
    """The HPA for one workload under replay, on an External AverageValue metric: the total
    request rate, with `target_rps_per_replica` as the per-pod target. `legacy=True` leaves
    spec.behavior nil, which is what KEDA does for a ScaledObject without `behavior`."""

    def __init__(
        self,
        target_rps_per_replica: float,
        min_replicas: int,
        max_replicas: int,
        *,
        legacy: bool = False,
        tick_seconds: float = 15.0,
        tolerance: float = 0.1,
        metrics_delay_seconds: float = 15.0,
        metrics_window_seconds: float = 60.0,
    ) -> None:
        check_rate_baseline(target_rps_per_replica, min_replicas, max_replicas)
        self.name = "hpa-legacy" if legacy else "hpa"
        self.tick_seconds = tick_seconds
        self.metrics_delay_seconds = metrics_delay_seconds
        self.metrics_window_seconds = metrics_window_seconds
        self.spec = HpaSpec(
            metrics=(ExternalTarget(TargetType.AVERAGE_VALUE, target_rps_per_replica),),
            min_replicas=min_replicas,
            max_replicas=max_replicas,
            behavior=None if legacy else HpaBehavior(),
            tolerance=tolerance,
        )
        self.state = HpaState()
        self.last_result: HpaResult | None = None

    def step(self, view: ClusterView) -> int:
        rate = view.metrics.rate(view.now, self.metrics_window_seconds, self.metrics_delay_seconds)
        scale = Scale(view.spec_replicas, view.status_replicas, view.ready_replicas)
        values = None if rate is None else (rate,)
        self.last_result, self.state = hpa_sync(view.now, self.spec, scale, (values,), self.state)
        return self.last_result.desired_replicas


def check_rate_baseline(target_rps_per_replica: float, min_replicas: int, max_replicas: int) -> None:
    """What every reactive baseline on the request rate (HPA, KEDA) needs of its settings."""
    if target_rps_per_replica <= 0:
        raise ValueError(f"target_rps_per_replica={target_rps_per_replica!r}: allowed > 0")
    if not 0 <= min_replicas <= max_replicas:
        raise ValueError(f"min_replicas={min_replicas!r}, max_replicas={max_replicas!r}: 0 <= min <= max")

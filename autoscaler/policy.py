"""ScalingPolicy: what a workload's owner asks of the autoscaler, validated once at load.

Defaults follow the HPA v2 API defaults for `behavior` (k8s-contract.md section 3.9) so that a
user who knows HPA gets no surprise, and the Knative panic threshold of 200 %.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

# The Kubernetes API's replica fields (HPA maxReplicas, Deployment replicas) are int32.
MAX_REPLICAS = 2**31 - 1
# llm-d's workload variant autoscaler saturates an engine at 80 % KV-cache use: past it, vLLM
# starts preempting running sequences, so new prompts wait.
DEFAULT_KV_CACHE_UTILIZATION_TARGET = 0.8
# The quantiles read without an objective (and where it has not chosen yet): pre-warm on the
# median, hold at 0.84 (tuned on NASA July).
DEFAULT_FORECAST_QUANTILE = 0.5
DEFAULT_FLOOR_QUANTILE = 0.84
# The quantile paths a forecast carries when an objective chooses among them; a chosen level
# reads the nearest one at or above it (Forecast.path), the safer side.
# With min_replicas 0, demand at or below this share of one replica's target load counts as
# none (autoscaler.scale_to_zero): a probe or a stray request an hour keeps no GPU warm, while a
# tenth of a replica's load (6 requests a minute at 1 rps per replica) brings one back.
DEFAULT_ACTIVATION_UTILIZATION = 0.1
OBJECTIVE_QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.84, 0.9, 0.95, 0.98, 0.99)


class SelectPolicy(StrEnum):
    MAX = "Max"
    MIN = "Min"
    DISABLED = "Disabled"


class RatePolicyType(StrEnum):
    PODS = "Pods"
    PERCENT = "Percent"


class PolicyError(ValueError):
    """A policy field is out of range; the message names the field, the value and the range."""


@dataclass(frozen=True, slots=True)
class RatePolicy:
    """At most `value` pods (or percent of the start count) change per `period_seconds`."""

    type: RatePolicyType
    value: int
    period_seconds: float


@dataclass(frozen=True, slots=True)
class ScalingRules:
    """One direction of HPA `behavior`: stabilization window, rate policies and how to combine them."""

    stabilization_window_seconds: float
    select_policy: SelectPolicy = SelectPolicy.MAX
    policies: tuple[RatePolicy, ...] = ()


def default_scale_up() -> ScalingRules:
    return ScalingRules(
        stabilization_window_seconds=0.0,
        select_policy=SelectPolicy.MAX,
        policies=(
            RatePolicy(RatePolicyType.PODS, 4, 15.0),
            RatePolicy(RatePolicyType.PERCENT, 100, 15.0),
        ),
    )


def default_scale_down() -> ScalingRules:
    return ScalingRules(
        stabilization_window_seconds=300.0,
        select_policy=SelectPolicy.MAX,
        policies=(RatePolicy(RatePolicyType.PERCENT, 100, 15.0),),
    )


@dataclass(frozen=True, slots=True)
class ScalingPolicy:
    """Targets, bounds and behavior for one workload.

    A replica serves `replica_capacity_rps` requests per second flat out; the load signal asks for
    enough replicas to run each at `target_utilization` of that. Optional thresholds turn the
    latency, queue and GPU signals on. The forecast is read at `forecast_quantile` over
    [now, now + cold start + `decision_delay_seconds`] and inflated by `forecast_headroom`.

    `objective_unserved_share` is the share of demand the workload may leave unserved; with it,
    the forecast and floor quantiles are chosen online to meet it (autoscaler.objective), below
    the lowest quantile also a utilization above `target_utilization` (up to a third of its
    headroom kept) for the load and forecast asks, and
    `forecast_quantile` / `forecast_floor_quantile`, when set, override the choice (None: chosen,
    or without an objective the defaults 0.5 and 0.84). `objective_ttft_attainment`, with
    `ttft_target_seconds` and a TTFT histogram to read, is the share of requests whose first token
    must come within the target: its misses move the same quantiles (None: the load's alone).

    While a forecast is in use, the forecast, not a window of past asks, says how far down is
    safe: no scale-down below what its `forecast_floor_quantile` needs over the same span (the
    floor holds replicas, it never adds them), and the scale-down stabilization window becomes
    `forecast_scale_down_window_seconds` (default 0) at full forecast trust, sliding back to
    `scale_down`'s own window as trust falls to none. Without a forecast, `scale_down` applies
    unchanged, as in HPA.

    With `min_replicas` 0 the forecast decides when the last replica goes and when the first
    comes back (autoscaler.scale_to_zero); load and forecast at or below `activation_utilization`
    of one replica's target load count as no demand (KEDA's activation threshold).

    `replica_capacity_rps` None means not known (nor learned yet): the load and the forecast ask
    for nothing and the reactive signals alone decide, down as well as up, as long as the load
    itself is live. `capacity_learned` says the capacity came from autoscaler.capacity rather than
    the settings, so that decisions it binds say so. The capacity and the load share a unit:
    tokens per second when the load query is a token rate.
    """

    replica_capacity_rps: float | None
    target_utilization: float = 0.7
    min_replicas: int = 1
    max_replicas: int = 100
    activation_utilization: float = DEFAULT_ACTIVATION_UTILIZATION
    p99_latency_target_seconds: float | None = None
    queue_depth_target_per_replica: float | None = None
    gpu_utilization_target: float | None = None
    kv_cache_utilization_target: float | None = DEFAULT_KV_CACHE_UTILIZATION_TARGET
    ttft_target_seconds: float | None = None
    capacity_learned: bool = False
    tolerance: float = 0.1
    panic_threshold: float = 2.0
    stale_after_seconds: float = 90.0
    forecast_quantile: float | None = None
    forecast_floor_quantile: float | None = None
    objective_unserved_share: float | None = None
    objective_ttft_attainment: float | None = None
    forecast_headroom: float = 0.0
    max_forecast_error: float = 0.5
    default_cold_start_seconds: float = 120.0
    decision_delay_seconds: float = 30.0
    forecast_scale_down_window_seconds: float = 0.0
    scale_up: ScalingRules = field(default_factory=default_scale_up)
    scale_down: ScalingRules = field(default_factory=default_scale_down)

    @property
    def target_rps_per_replica(self) -> float | None:
        capacity = self.replica_capacity_rps
        return None if capacity is None else capacity * self.target_utilization

    @property
    def forecast_quantiles(self) -> tuple[float, ...]:
        """The quantile paths decide() reads, plus the median and p90 that the dashboard and the
        forecast-error alert plot whatever the policy reads."""
        fixed = {
            0.5,
            0.9,
            DEFAULT_FORECAST_QUANTILE if self.forecast_quantile is None else self.forecast_quantile,
            DEFAULT_FLOOR_QUANTILE if self.forecast_floor_quantile is None else self.forecast_floor_quantile,
        }
        chosen = self.objective_unserved_share is not None and (
            self.forecast_quantile is None or self.forecast_floor_quantile is None
        )
        return tuple(sorted(fixed | set(OBJECTIVE_QUANTILES) if chosen else fixed))

    def validate(self) -> ScalingPolicy:
        """Return self, or raise PolicyError naming the first bad field, its value and the range."""
        capacity = self.replica_capacity_rps
        _check(
            capacity is None or (math.isfinite(capacity) and capacity > 0),
            "replica_capacity_rps",
            capacity,
            "finite and > 0, or unset (learned)",
        )
        _check(0 < self.target_utilization <= 1, "target_utilization", self.target_utilization, "(0, 1]")
        _check(self.min_replicas >= 0, "min_replicas", self.min_replicas, ">= 0")
        _check(
            max(1, self.min_replicas) <= self.max_replicas <= MAX_REPLICAS,
            "max_replicas",
            self.max_replicas,
            f">= max(1, min_replicas={self.min_replicas}) and <= {MAX_REPLICAS}",
        )
        _check(
            0 <= self.activation_utilization < 1,
            "activation_utilization",
            self.activation_utilization,
            "[0, 1): a share of one replica's target load",
        )
        for name in ("p99_latency_target_seconds", "queue_depth_target_per_replica", "ttft_target_seconds"):
            value = getattr(self, name)
            _check(value is None or value > 0, name, value, "> 0 or unset")
        gpu = self.gpu_utilization_target
        _check(gpu is None or 0 < gpu <= 1, "gpu_utilization_target", gpu, "(0, 1] or unset")
        kv = self.kv_cache_utilization_target
        _check(kv is None or 0 < kv <= 1, "kv_cache_utilization_target", kv, "(0, 1] or unset")
        _check(0 <= self.tolerance < 1, "tolerance", self.tolerance, "[0, 1)")
        _check(self.panic_threshold > 1, "panic_threshold", self.panic_threshold, "> 1")
        _check(self.stale_after_seconds > 0, "stale_after_seconds", self.stale_after_seconds, "> 0")
        for name in (
            "forecast_quantile",
            "forecast_floor_quantile",
            "objective_unserved_share",
            "objective_ttft_attainment",
        ):
            value = getattr(self, name)
            _check(value is None or 0 < value < 1, name, value, "(0, 1) or unset")
        _check(0 <= self.forecast_headroom <= 10, "forecast_headroom", self.forecast_headroom, "[0, 10]")
        _check(self.max_forecast_error > 0, "max_forecast_error", self.max_forecast_error, "> 0")
        _check(
            0 <= self.default_cold_start_seconds <= 3600,
            "default_cold_start_seconds",
            self.default_cold_start_seconds,
            "[0, 3600]",
        )
        _check(
            0 <= self.decision_delay_seconds <= 600,
            "decision_delay_seconds",
            self.decision_delay_seconds,
            "[0, 600]",
        )
        _check(
            0 <= self.forecast_scale_down_window_seconds <= 3600,
            "forecast_scale_down_window_seconds",
            self.forecast_scale_down_window_seconds,
            "[0, 3600]",
        )
        for direction, rules in (("scale_up", self.scale_up), ("scale_down", self.scale_down)):
            _check(
                0 <= rules.stabilization_window_seconds <= 3600,
                f"{direction}.stabilization_window_seconds",
                rules.stabilization_window_seconds,
                "[0, 3600]",
            )
            _check(
                bool(rules.policies) or rules.select_policy is SelectPolicy.DISABLED,
                f"{direction}.policies",
                rules.policies,
                "at least one policy unless select_policy is Disabled",
            )
            for i, rate in enumerate(rules.policies):
                _check(rate.value > 0, f"{direction}.policies[{i}].value", rate.value, "> 0")
                _check(
                    1 <= rate.period_seconds <= 1800,
                    f"{direction}.policies[{i}].period_seconds",
                    rate.period_seconds,
                    "[1, 1800]",
                )
        return self


def _check(ok: bool, name: str, value: object, allowed: str) -> None:
    if not ok:
        raise PolicyError(f"{name}={value!r} is out of range: allowed {allowed}")

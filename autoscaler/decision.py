"""The decision the core returns, the reasons it can give, and the state it carries between ticks."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from autoscaler.objective import ObjectiveState, ObjectiveStatus


class Reason(StrEnum):
    """Why the published replica count is what it is; one per decision, the binding constraint."""

    LOAD = "load"
    LATENCY = "latency"
    QUEUE = "queue"
    GPU = "gpu"
    KV_CACHE = "kv_cache"
    TTFT = "ttft"
    FORECAST = "forecast"
    PANIC = "panic"
    HELD_STALE = "held_stale"
    # min_replicas 0: no demand above the activation threshold now or expected within two leads.
    IDLE = "idle"
    STABILIZED = "stabilized"
    RATE_LIMITED = "rate_limited"
    MIN = "min"
    MAX = "max"
    # The load or forecast bound, measured against a capacity learned online (autoscaler.capacity)
    # because the settings give none: a learned number can be wrong, so it is named as such.
    LOAD_LEARNED_CAPACITY = "load_learned_capacity"
    FORECAST_LEARNED_CAPACITY = "forecast_learned_capacity"


@dataclass(frozen=True, slots=True)
class Recommendation:
    """A raw (unclamped) recommendation stored for the stabilization windows."""

    at: float
    replicas: int


@dataclass(frozen=True, slots=True)
class ScaleEvent:
    """A change of replicas actually published: positive up, negative down."""

    at: float
    change: int


@dataclass(frozen=True, slots=True)
class DecisionState:
    """Everything decide() remembers between ticks; frozen, replaced on every call.

    `last_panic_at` is the last tick whose load was over the panic threshold (None: not panicking);
    `panic_replicas` the most replicas asked for since the panic began, held until it ends;
    `objective` what the objective's controller learned (autoscaler.objective).
    """

    recommendations: tuple[Recommendation, ...] = ()
    scale_events: tuple[ScaleEvent, ...] = ()
    last_panic_at: float | None = None
    panic_replicas: int = 0
    last_replicas: int | None = None
    objective: ObjectiveState = field(default_factory=ObjectiveState)


@dataclass(frozen=True, slots=True)
class Decision:
    """The replica count to publish and why.

    `recommendations` holds what each live signal asked for (keys: the `Signal` names and
    forecast), so a dashboard can show the runner-up. `forecast_rps` is the forecast peak used
    (after trust and headroom), `lead_seconds` the look-ahead, `forecast_trust` in [0, 1].
    `forecast_floor_replicas` is what the forecast's floor quantile needs: no scale-down went below
    the smaller of it and the current count (None without a usable floor). It holds rather than
    asks, so it is not among `recommendations`. `objective` is the declared objective's status
    and the quantiles this decision read (None without an objective).
    """

    at: float
    replicas: int
    reason: Reason
    recommendations: dict[str, int] = field(default_factory=dict)
    forecast_rps: float | None = None
    lead_seconds: float = 0.0
    forecast_trust: float = 0.0
    forecast_floor_replicas: int | None = None
    objective: ObjectiveStatus | None = None

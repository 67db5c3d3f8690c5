"""The Knative Serving KPA (decider plus PodAutoscaler bounds) on the rps metric, for the replay.

`kpa_decide` is one 2 s decider tick (keda-knative.md section 6.5) as a pure function over an
explicit frozen state (panic time, max panic pods, the scale-down-delay window); `apply_bounds`
is the PA reconciler's clamp (6.7). `KnativeAutoscaler` wires them to the replay's view.

Window averages: Knative sums per-second samples into 1 s buckets and averages the buckets of
the window. The replay's pipeline returns the exact mean of the demand over the same span, which
for demand constant within each second (the traces are per-second) is the same number: 30 s at
10 rps then 30 s at 40 rps fill 60 buckets averaging (30 x 10 + 30 x 40) / 60 = 25, the integral
over the 60 s divided by 60. At the trace start both divide by the seconds seen so far, not by
the full window. Two differences remain: the replay measures total demand, so pod sampling and
its extrapolation are not modelled, and a gap in the trace is skipped where Knative counts zeros.

Scale to zero is off and min/max are the replay's, so KPA is compared at the same floor as the
other policies; activation scale (1), burst capacity and the activator are not modelled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from simulator.view import ClusterView

WINDOW_AVERAGE_DIGITS = 6  # bucketing.go rounds window averages to 6 decimal digits


@dataclass(frozen=True, slots=True)
class KpaSettings:
    target_rps_per_replica: float
    stable_window_seconds: float = 60.0
    panic_window_percentage: float = 10.0
    panic_threshold: float = 2.0
    max_scale_up_rate: float = 1000.0
    max_scale_down_rate: float = 2.0
    scale_down_delay_seconds: float = 0.0

    @property
    def panic_window_seconds(self) -> float:
        """round(stable x pct / 100), at least 1 s: 60 s at 10 % -> 6 s."""
        return max(1.0, float(round(self.stable_window_seconds * self.panic_window_percentage / 100)))


@dataclass(frozen=True, slots=True)
class KpaState:
    """`panic_since` is the decider's panicTime (None: not panicking); `delay_window` holds the
    (tick, desired) pairs the scale-down delay still remembers."""

    panic_since: float | None = None
    max_panic_pods: int = 0
    delay_window: tuple[tuple[float, int], ...] = ()


@dataclass(frozen=True, slots=True)
class KpaResult:
    desired_pods: int
    panicking: bool


def initial_kpa_state(now: float, ready_raw: int) -> KpaState:
    """A new decider starts panicking at the current ready count when more than one pod is
    ready, so a restarted autoscaler with no metric history holds its scale for a stable window."""
    if ready_raw > 1:
        return KpaState(panic_since=now, max_panic_pods=ready_raw)
    return KpaState()


def kpa_decide(
    now: float,
    settings: KpaSettings,
    ready_raw: int,
    stable_rps: float | None,
    panic_rps: float | None,
    state: KpaState,
) -> tuple[KpaResult | None, KpaState]:
    """One decider tick; None when there is no data (the PA then leaves the scale alone).

    Rate limits use ready pods, floored at 1: with 10 ready, at most ceil(1000 x 10) = 10000 and at
    least floor(10 / 2) = 5 pods, so an idle revision halves per tick: 10 -> 5 -> 2 -> 1.
    """
    if stable_rps is None or panic_rps is None:
        return None, state
    target = settings.target_rps_per_replica
    ready = max(1, ready_raw)
    max_up = math.ceil(settings.max_scale_up_rate * ready)
    max_down = math.floor(ready / settings.max_scale_down_rate)
    stable_pods = math.ceil(round(stable_rps, WINDOW_AVERAGE_DIGITS) / target)
    panic_pods = math.ceil(round(panic_rps, WINDOW_AVERAGE_DIGITS) / target)
    desired_stable = min(max(stable_pods, max_down), max_up)
    desired_panic = min(max(panic_pods, max_down), max_up)
    # The threshold compares ceil'd panic pods with ready pods: 4 ready, 7.1 pods of load -> 8 / 4 = 2.
    over_threshold = panic_pods / ready >= settings.panic_threshold
    panic_since, max_panic_pods = state.panic_since, state.max_panic_pods
    if over_threshold:
        panic_since = now
    elif panic_since is not None and panic_since + settings.stable_window_seconds < now:
        panic_since, max_panic_pods = None, 0
    desired = desired_stable
    if panic_since is not None:
        # Never scale down while panicking: the panic high-water mark holds until panic ends.
        max_panic_pods = max(max_panic_pods, desired_stable, desired_panic)
        desired = max_panic_pods
    delay_window = state.delay_window
    if settings.scale_down_delay_seconds > 0:
        cutoff = now - settings.scale_down_delay_seconds
        delay_window = (*(entry for entry in delay_window if entry[0] > cutoff), (now, desired))
        desired = max(pods for _, pods in delay_window)
    next_state = replace(
        state, panic_since=panic_since, max_panic_pods=max_panic_pods, delay_window=delay_window
    )
    return KpaResult(desired, panic_since is not None), next_state


def apply_bounds(desired_pods: int, min_replicas: int, max_replicas: int) -> int:
    """The PA's clamp (max 0 means unlimited); with scale to zero disabled, 0 becomes 1."""
    want = max(desired_pods, min_replicas)
    if max_replicas > 0:
        want = min(want, max_replicas)
    return max(want, 1)


class KnativeAutoscaler:
    """KPA on requests per second, ticked every 2 s against the replay's metrics pipeline."""

    def __init__(
        self,
        target_rps_per_replica: float,
        min_replicas: int,
        max_replicas: int,
        *,
        tick_seconds: float = 2.0,
        stable_window_seconds: float = 60.0,
        panic_window_percentage: float = 10.0,
        panic_threshold: float = 2.0,
        max_scale_up_rate: float = 1000.0,
        max_scale_down_rate: float = 2.0,
        scale_down_delay_seconds: float = 0.0,
        metrics_delay_seconds: float = 1.0,
    ) -> None:
        if target_rps_per_replica <= 0:
            raise ValueError(f"target_rps_per_replica={target_rps_per_replica!r}: allowed > 0")
        if max_scale_up_rate <= 1 or max_scale_down_rate <= 1:
            raise ValueError(
                f"max_scale_up_rate={max_scale_up_rate!r}, max_scale_down_rate={max_scale_down_rate!r}: "
                "both must be > 1"
            )
        self.name = "knative"
        self.tick_seconds = tick_seconds
        self.min_replicas = min_replicas
        self.max_replicas = max_replicas
        self.metrics_delay_seconds = metrics_delay_seconds
        self.settings = KpaSettings(
            target_rps_per_replica=target_rps_per_replica,
            stable_window_seconds=stable_window_seconds,
            panic_window_percentage=panic_window_percentage,
            panic_threshold=panic_threshold,
            max_scale_up_rate=max_scale_up_rate,
            max_scale_down_rate=max_scale_down_rate,
            scale_down_delay_seconds=scale_down_delay_seconds,
        )
        self.state: KpaState | None = None
        self.last_result: KpaResult | None = None

    def step(self, view: ClusterView) -> int:
        if self.state is None:
            self.state = initial_kpa_state(view.now, view.ready_replicas)
        settings = self.settings
        delay = self.metrics_delay_seconds
        stable = view.metrics.rate(view.now, settings.stable_window_seconds, delay)
        panic = view.metrics.rate(view.now, settings.panic_window_seconds, delay)
        result, self.state = kpa_decide(view.now, settings, view.ready_replicas, stable, panic, self.state)
        if result is None:
            return view.spec_replicas
        self.last_result = result
        return apply_bounds(result.desired_pods, self.min_replicas, self.max_replicas)

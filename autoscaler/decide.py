"""decide(): one scaling decision from what is measured, what is forecast and what was decided.

Order of operations (DESIGN.md, "The decision"):
0. with an objective, the tick's measured shortfall moves the quantiles the forecast is read at
   and, once the lowest quantile still misses less than declared, the utilization the load and
   forecast asks are sized at (autoscaler.objective: the declared target, up to 0.9 for 0.7);
1. every live reactive signal and the forecast's pre-warm ask for a count; the largest wins,
   so the result is never below what a reactive scaler at that utilization would ask for;
2. without a live load signal nothing may scale down: the count is held (HELD_STALE); with no
   capacity known yet (none set, none learned) a live load lets the reactive signals scale down;
   with `min_replicas` 0 the forecast decides the boundary between zero and one replica
   (autoscaler.scale_to_zero): the asks of noise at or below the activation threshold give way
   to zero when no demand is expected, and one replica is asked one cold start ahead of demand;
3. a load far above ready capacity is a panic (Knative's): jump at once past windows and rate
   limits, and hold the panic's peak until the load has been quiet for the scale-down window;
4. otherwise HPA's behavior applies (stabilization windows, Pods/Percent policies, min/max),
   through the same functions the faithful HPA simulator uses; while a trusted forecast is in
   use, its floor rather than HPA's 5-minute window of past asks guards the scale-down (see
   `ScalingPolicy`): the window only ever held capacity in case the load came back, which is
   what the forecast answers with evidence.
The reason is the constraint that bound the published count; a load or forecast bound measured
against a learned capacity says so (`Reason.LOAD_LEARNED_CAPACITY`, `FORECAST_LEARNED_CAPACITY`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from autoscaler.decision import Decision, DecisionState, Reason, Recommendation
from autoscaler.objective import (
    ObjectiveStatus,
    OperatingPoint,
    observe,
    operating_point,
    status,
    within_objective,
)
from autoscaler.observations import Observations, Signal
from autoscaler.policy import ScalingPolicy
from autoscaler.prewarm import Prewarm, prewarm
from autoscaler.reactive import reactive_recommendations, usable_value
from autoscaler.scale_to_zero import Zero, scale_to_zero
from autoscaler.stabilization import Limit, rate_limit, record_scale_event, stabilize
from forecasting.forecast import Forecast

# On a tie the reactive signal is named: it is measured, the forecast is inferred.
_SIGNAL_REASONS = {
    Signal.LOAD: Reason.LOAD,
    Signal.P99_LATENCY: Reason.LATENCY,
    Signal.QUEUE_DEPTH: Reason.QUEUE,
    Signal.GPU_UTILIZATION: Reason.GPU,
    Signal.KV_CACHE_UTILIZATION: Reason.KV_CACHE,
    Signal.TTFT: Reason.TTFT,
    "forecast": Reason.FORECAST,
}
_LEARNED_REASONS = {
    Reason.LOAD: Reason.LOAD_LEARNED_CAPACITY,
    Reason.FORECAST: Reason.FORECAST_LEARNED_CAPACITY,
}
_LIMIT_REASONS = {
    Limit.SCALE_UP_LIMIT: Reason.RATE_LIMITED,
    Limit.SCALE_DOWN_LIMIT: Reason.RATE_LIMITED,
    Limit.TOO_MANY: Reason.MAX,
    Limit.TOO_FEW: Reason.MIN,
}


@dataclass(frozen=True, slots=True)
class _Wanted:
    """The blended ask before behavior rules: the count and the reason it is that count."""

    replicas: int
    reason: Reason


def decide(
    now: float,
    observations: Observations,
    forecast: Forecast | None,
    policy: ScalingPolicy,
    state: DecisionState,
) -> tuple[Decision, DecisionState]:
    """The replica count to publish at `now` and the state for the next call.

    `policy` must be validated. Raises ValueError on impossible observations (negative replica
    counts, a non-finite or negative `now`).
    """
    _check(now, observations)
    state = _rewind(now, state)
    state = replace(state, objective=observe(now, observations, policy, state.objective))
    chosen = operating_point(policy, state.objective)
    # The load and forecast asks (and the panic, which reads the load's) at the chosen utilization;
    # scale to zero's activation threshold stays at the declared one.
    sized = (
        policy
        if chosen.utilization == policy.target_utilization
        else replace(policy, target_utilization=chosen.utilization)
    )
    asked = reactive_recommendations(now, observations, sized)
    ahead = prewarm(now, observations, forecast, sized, chosen)
    if ahead is not None:
        asked["forecast"] = ahead.replicas
    current = observations.current_replicas
    # Live load (whether or not a capacity turns it into replicas) is what lets a count fall.
    load_known = usable_value(observations.load, now, policy.stale_after_seconds) is not None
    if current is None:
        return _hold_unknown_scale(now, asked, load_known, ahead, policy, state, chosen)

    wanted = _hold_forecast_floor(_blend(asked, current, load_known), current, ahead)
    met = within_objective(policy, state.objective)
    verdict = scale_to_zero(now, observations, forecast, policy, chosen.floor, current, met)
    wanted = _zero_boundary(wanted, verdict, current)
    state = _track_panic(now, asked.get(Signal.LOAD), observations, policy, state)
    if state.last_panic_at is not None:
        replicas, reason = _panic(wanted, current, policy, state)
        if reason is Reason.PANIC and Signal.LOAD not in asked:
            # The panic's peak still holds, but what holds it now is the missing load: saying
            # "panic" during a Prometheus outage would send the operator after a burst.
            reason = Reason.HELD_STALE
        # The raw ask, as HPA stores it: once the panic ends, the down window judges quiet asks.
        recommendations = (*state.recommendations, Recommendation(now, wanted.replicas))
    else:
        replicas, reason, recommendations = _behave(now, wanted, current, policy, state, ahead)
    events = record_scale_event(
        now, current, replicas, state.scale_events, policy.scale_up, policy.scale_down
    )
    state = replace(state, recommendations=recommendations, scale_events=events, last_replicas=replicas)
    objective = status(policy, state.objective, chosen, replicas)
    return _decision(now, replicas, reason, asked, ahead, policy, objective), state


def _check(now: float, observations: Observations) -> None:
    if not math.isfinite(now) or now < 0:
        raise ValueError(f"now={now!r} must be a finite, non-negative Unix time in seconds")
    for name in ("current_replicas", "ready_replicas"):
        count = getattr(observations, name)
        if count is not None and count < 0:
            raise ValueError(f"observations.{name}={count!r} must be >= 0")


def _rewind(now: float, state: DecisionState) -> DecisionState:
    """After the clock stepped back (an NTP correction), what was stamped later than `now` counts
    as stamped at `now`: still inside every window, so it keeps holding replicas and limiting
    rates, but a 0 s scale-up window no longer sees it, so a lower old ask cannot cap a scale-up."""
    stamps = [r.at for r in state.recommendations] + [e.at for e in state.scale_events]
    if max(stamps, default=now) <= now and (state.last_panic_at or 0.0) <= now:
        return state
    return replace(
        state,
        recommendations=tuple(replace(r, at=min(r.at, now)) for r in state.recommendations),
        scale_events=tuple(replace(e, at=min(e.at, now)) for e in state.scale_events),
        last_panic_at=None if state.last_panic_at is None else min(state.last_panic_at, now),
    )


def _blend(asked: dict[str, int], current: int, load_known: bool) -> _Wanted:
    """The largest ask; unless the load is known (`load_known`: its signal asks, or it is live
    and no capacity is known to turn it into replicas), never below the current count."""
    if not asked:
        return _Wanted(current, Reason.HELD_STALE)
    name = max(asked, key=lambda signal: asked[signal])  # dicts keep SIGNALS order: ties go reactive
    wanted = _Wanted(asked[name], _SIGNAL_REASONS[name])
    if not load_known and wanted.replicas <= current:
        return _Wanted(current, Reason.HELD_STALE)
    return wanted


def _hold_forecast_floor(wanted: _Wanted, current: int, ahead: Prewarm | None) -> _Wanted:
    """Keep the replicas the forecast's floor quantile needs; the floor holds, never adds: with
    10 replicas, a floor of 8 and an ask of 6, the ask becomes 8; with a floor of 12, it stays."""
    if ahead is None or ahead.floor_replicas is None:
        return wanted
    held = min(current, ahead.floor_replicas)
    return _Wanted(held, Reason.FORECAST) if held > wanted.replicas else wanted


def _zero_boundary(wanted: _Wanted, verdict: Zero | None, current: int) -> _Wanted:
    """Apply scale_to_zero's verdict to the 0-or-1 boundary; counts above one are left alone
    (an ask of 2 is demand no threshold calls noise). IDLE overrides the floor's hold: the floor
    quantile's few requests are exactly what the threshold calls none."""
    if verdict is None or wanted.replicas > 1:
        return wanted
    if verdict in (Zero.DEMAND, Zero.EXPECTED, Zero.OVER_OBJECTIVE):
        # A load with no capacity to turn it into replicas asks nothing, yet it is demand; the
        # objective holds through the forecast's floor, which it chose.
        reason = Reason.LOAD if verdict is Zero.DEMAND else Reason.FORECAST
        return wanted if wanted.replicas >= 1 else _Wanted(1, reason)
    if verdict is Zero.IDLE:
        return _Wanted(0, Reason.IDLE)
    keep = min(current, 1)
    return wanted if wanted.replicas == keep else _Wanted(keep, Reason.HELD_STALE)


def _track_panic(
    now: float,
    load_replicas: int | None,
    observations: Observations,
    policy: ScalingPolicy,
    state: DecisionState,
) -> DecisionState:
    """Enter or extend a panic when the load needs `panic_threshold` times the ready replicas
    (with 4 ready and threshold 2, a load needing 8 or more); leave it once no tick has been over
    for the scale-down window."""
    ready = observations.ready_replicas
    if ready is None:
        ready = observations.current_replicas or 0
    over = load_replicas is not None and load_replicas / max(1, ready) >= policy.panic_threshold
    if over:
        return replace(state, last_panic_at=now, panic_replicas=max(state.panic_replicas, load_replicas or 0))
    quiet_since = state.last_panic_at
    if quiet_since is not None and now - quiet_since >= policy.scale_down.stabilization_window_seconds:
        return replace(state, last_panic_at=None, panic_replicas=0)
    return state


def _panic(wanted: _Wanted, current: int, policy: ScalingPolicy, state: DecisionState) -> tuple[int, Reason]:
    replicas = max(current, wanted.replicas, state.panic_replicas)
    if replicas > policy.max_replicas:
        return policy.max_replicas, Reason.MAX
    if replicas < policy.min_replicas:
        return policy.min_replicas, Reason.MIN
    # A signal asking more than the panic peak (the forecast, say) still names itself.
    return replicas, wanted.reason if wanted.replicas > state.panic_replicas else Reason.PANIC


def _behave(
    now: float,
    wanted: _Wanted,
    current: int,
    policy: ScalingPolicy,
    state: DecisionState,
    ahead: Prewarm | None,
) -> tuple[int, Reason, tuple[Recommendation, ...]]:
    """HPA's normalizeDesiredReplicasWithBehaviors: windows, then rate limits and min/max."""
    stabilized, recommendations = stabilize(
        now, wanted.replicas, current, state.recommendations, policy.scale_up, policy.scale_down
    )
    if ahead is not None:
        # The history stays pruned to HPA's window, so that it is whole again the moment the
        # forecast goes away.
        window = scale_down_window(ahead.trust, policy)
        scale_down = replace(policy.scale_down, stabilization_window_seconds=window)
        stabilized, _ = stabilize(
            now, wanted.replicas, current, state.recommendations, policy.scale_up, scale_down
        )
    limited, limit = rate_limit(
        now,
        stabilized,
        current,
        policy.min_replicas,
        policy.max_replicas,
        state.scale_events,
        policy.scale_up,
        policy.scale_down,
    )
    # rate_limit leaves an unchanged count alone, even one outside bounds the user just moved.
    if limited > policy.max_replicas:
        return policy.max_replicas, Reason.MAX, recommendations
    if limited < policy.min_replicas:
        return policy.min_replicas, Reason.MIN, recommendations
    if limit is not Limit.WITHIN_RANGE:
        return limited, _LIMIT_REASONS[limit], recommendations
    if stabilized != wanted.replicas:
        return limited, Reason.STABILIZED, recommendations
    return limited, wanted.reason, recommendations


def scale_down_window(trust: float, policy: ScalingPolicy) -> float:
    """The scale-down window while a forecast with this trust is in use: the forecast's window at
    full trust, HPA's at none, linear between. Defaults, trust 0.5: (0 + 300) / 2 = 150 s."""
    reactive = policy.scale_down.stabilization_window_seconds
    return trust * policy.forecast_scale_down_window_seconds + (1 - trust) * reactive


def _hold_unknown_scale(
    now: float,
    asked: dict[str, int],
    load_known: bool,
    ahead: Prewarm | None,
    policy: ScalingPolicy,
    state: DecisionState,
    chosen: OperatingPoint,
) -> tuple[Decision, DecisionState]:
    """The scale target's count is unknown (API error, not created yet): publish the last count,
    raised to any signal asking for more; on the very first tick, what the signals ask within
    [min, max]. Windows and events are left alone: nothing was measured against a known count."""
    held = state.last_replicas if state.last_replicas is not None else policy.min_replicas
    wanted = _blend(asked, held, load_known)
    replicas = max(held, wanted.replicas)
    reason = Reason.HELD_STALE if replicas == held else wanted.reason
    if replicas > policy.max_replicas:
        replicas, reason = policy.max_replicas, Reason.MAX
    elif replicas < policy.min_replicas:
        replicas, reason = policy.min_replicas, Reason.MIN
    objective = status(policy, state.objective, chosen, replicas)
    decision = _decision(now, replicas, reason, asked, ahead, policy, objective)
    return decision, replace(state, last_replicas=replicas)


def _decision(
    now: float,
    replicas: int,
    reason: Reason,
    asked: dict[str, int],
    ahead: Prewarm | None,
    policy: ScalingPolicy,
    objective: ObjectiveStatus | None,
) -> Decision:
    if policy.capacity_learned:
        reason = _LEARNED_REASONS.get(reason, reason)
    return Decision(
        at=now,
        replicas=replicas,
        reason=reason,
        recommendations=dict(asked),
        forecast_rps=None if ahead is None else ahead.rps,
        lead_seconds=0.0 if ahead is None else ahead.lead_seconds,
        forecast_trust=0.0 if ahead is None else ahead.trust,
        forecast_floor_replicas=None if ahead is None else ahead.floor_replicas,
        objective=objective,
    )

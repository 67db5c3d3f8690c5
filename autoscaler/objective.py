"""The objective: the share of demand a workload may leave unserved, met with the fewest replicas.

A user cannot tune forecast quantiles per workload; they can say "at most 0.1 % of requests may
find no ready replica". The policy turns that into its floor and pre-warm quantiles online, from
what it observes itself: each tick it measures the demand the ready replicas could not serve
(the load reading above ready capacity, `replica_capacity_rps` each; in expectation over the
seconds a 60 s rate averages, `expected_shortfall`) and moves one level, the
logit of the floor quantile, by an adaptive-conformal step (Gibbs and Candes, 2021):

    level += rate * dt/3600 * (shortfall - objective * load) / (objective * trailing mean load)

A tick that leaves nothing unserved lowers the level by `rate` per hour (at the usual load); a
tick that misses raises it by the shortfall in units of the objective. Summed, the steps are the
difference between the unserved demand and `objective` times all demand, so as long as the level
stays inside its bounds the long-run unserved share is the objective: the quantiles settle where
the misses the forecast leaves cost exactly what was declared, and no higher (more replicas for
nothing). The pre-warm quantile moves with the floor, `PREWARM_OFFSET` below it in logit (the
0.84 floor and median pre-warm the defaults were tuned to sit one such offset apart).

A workload that also declares a latency objective (`objective_ttft_attainment`: that share of
requests gets its first token within `ttft_target_seconds`) has a second source of misses: an LLM
server's TTFT crosses its target far below flat-out capacity (bursts, prompts queued behind long
prefills), where the load above capacity sees nothing. Each tick then reads the share of the
last minute's requests over the target from the TTFT histogram (autoscaler.latency_misses) and
measures it in units of the allowed share, 1 - attainment, the way the shortfall is measured in
units of the unserved share; the level moves by the larger of the two:

    level += rate * dt/3600 * load / mean load * max(unserved excess, (over - allowed) / allowed)

so a quiet tick still lowers it by `rate` per hour, a miss of either kind raises it, and where it
settles each of the two long-run shares is at most what was declared.

Below the lowest floor quantile the level goes on spending headroom: where even the 0.1
quantile leaves fewer misses than declared, what holds the replicas is the reactive ask, load
over `target_utilization` of each replica's capacity (on the ServeGen series it bound three ticks
in four at the lowest floor, and the policy paid more than HPA at the same target for fewer
misses than the objective allowed). So the level runs on down, `HEADROOM_LEVELS` logit units
below the lowest floor, and over that stretch the utilization the load and forecast asks are
sized at rises linearly from the workload's `target_utilization` to `1 - (1 - target) *
KEPT_HEADROOM` (0.7 -> 0.9): the headroom shrinks only while the measured misses stay within the
objective, and the first misses above it take it back before any quantile moves. An expert's
fixed floor quantile leaves the utilization as set.

Above the highest floor quantile the level keeps count instead of stopping: misses the 0.99
floor could not answer (a burst after a long quiet stretch, a cold start behind a trace gap) raise
it on, up to `DEBT_LEVELS` logit units (eight quiet hours at the usual load), and the quantiles are
read at 0.99 until the quiet hours have paid that back. A level that stopped at 0.99 dropped
those misses from its sum, and the long-run share came out above the objective (ServeGen m-mid:
14 % over at 120 s). The count is bounded so that a burst the workload could not have met does
not hold the highest quantile for a day after, and it does not grow while the replicas are at
max_replicas, where a higher quantile would ask for nothing more.

A missing or stale load reading moves nothing: without evidence the level must not fall, since
a lower level releases replicas. Likewise, with a latency objective, a missing or stale TTFT
histogram (or one holding no requests) lets only the load's misses raise the level, never lower it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from autoscaler.latency_misses import share_over
from autoscaler.observations import Observations
from autoscaler.policy import (
    DEFAULT_FLOOR_QUANTILE,
    DEFAULT_FORECAST_QUANTILE,
    OBJECTIVE_QUANTILES,
    ScalingPolicy,
)
from autoscaler.reactive import usable_value

# One request in a thousand finds no ready replica: the settings' default objective.
DEFAULT_UNSERVED_SHARE = 0.001
# One request in a hundred may wait past the TTFT target: the settings' default latency objective.
DEFAULT_TTFT_ATTAINMENT = 0.99
LOWEST_FLOOR, HIGHEST_FLOOR = OBJECTIVE_QUANTILES[0], OBJECTIVE_QUANTILES[-1]


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


# The defaults' pair, one offset apart: logit(0.84) - logit(0.5).
PREWARM_OFFSET = _logit(DEFAULT_FLOOR_QUANTILE) - _logit(DEFAULT_FORECAST_QUANTILE)
# Logit units per hour that a quiet hour lowers the level: four quiet hours take the floor from
# 0.84 to 0.5, a quiet day to the lowest; misses of the objective's size over an hour put back
# what a quiet hour took. Slower (0.1) left a one-day trace spending 5 % over HPA for nothing
# before it had come down; both settle where the misses cost the objective.
RATE_PER_HOUR = 0.5
TRAILING_SECONDS = 86400.0
# A load reading is a rate over the minute before it was observed (the examples' [1m] window),
# and it arrives a scrape delay late: it is judged against the mean ready count of the ticks in
# that minute, not against the count now, which after a scale-down would turn the lagging
# reading of the higher load into misses that never happened.
READING_WINDOW_SECONDS = 60.0
READY_MEMORY_SECONDS = 300.0
SPREAD_SCALE = 0.25
# A tick after a long gap (a restart, a stalled loop) counts as at most this long.
MAX_TICK_SECONDS = 300.0
# Logit units below the lowest floor over which the headroom above the load shrinks: four quiet
# hours at the usual load, like the run from 0.84 down to 0.5.
HEADROOM_LEVELS = 2.0
# The share of the workload's headroom (1 - target_utilization) that stays at the lowest level:
# some always, since the load reading is a minute's mean a scrape late.
KEPT_HEADROOM = 1 / 3
LOWEST_LEVEL = _logit(LOWEST_FLOOR) - HEADROOM_LEVELS
# Logit units above the highest floor quantile that count misses it could not answer: eight
# quiet hours. Measured on ServeGen m-mid and m-large given HPA@0.7's unserved share (cold start
# 120 s and 300 s): 0 left m-mid 14-15 % over its objective, 1 and 2 still 11-15 %, 3 within
# 6.2 % and 4 within 1.2 % with m-large under HPA@0.7's replica-hours, 6 put m-large over them.
DEBT_LEVELS = 4.0
TOP_LEVEL = _logit(HIGHEST_FLOOR)
HIGHEST_LEVEL = TOP_LEVEL + DEBT_LEVELS


@dataclass(frozen=True, slots=True)
class ObjectiveState:
    """What the controller carries between ticks (inside DecisionState, saved with it).

    `level` is the logit of the floor quantile, below the lowest one how much headroom is spent,
    above the highest the misses still to be paid back (None before the first tick: the default
    floor);
    `demand` and `unserved` are request totals and `seconds` the time they span, each decayed
    with a `TRAILING_SECONDS` time constant; `timed` and `late` the same for the ticks with a
    usable TTFT reading (requests, and those over the TTFT target), with a latency objective
    only; `ready` the (time, ready replicas) of the last `READY_MEMORY_SECONDS`; `loads` the
    (observed time, value) of the last reading."""

    level: float | None = None
    demand: float = 0.0
    unserved: float = 0.0
    seconds: float = 0.0
    last_at: float | None = None
    ready: tuple[tuple[float, int], ...] = ()
    loads: tuple[tuple[float, float], ...] = ()
    # Appended, never inserted: a slotted dataclass unpickles its fields by position, so a state
    # saved before them restores with these unset (sidecar.state_store completes it).
    timed: float = 0.0
    late: float = 0.0


@dataclass(frozen=True, slots=True)
class ObjectiveStatus:
    """What a decision reports of its objective: the declared share, the trailing share the loop
    measured (None before any demand), the quantiles it used, and `unreachable`, a one-line why
    when the replicas are at max_replicas and a trailing share is worse than declared. With a
    latency objective also the declared TTFT attainment and the trailing one the loop read from
    the TTFT histogram (None before any timed request). `utilization` is what the load and
    forecast asks were sized at (the policy's target, or above it, see `operating_point`)."""

    unserved_share: float
    trailing_unserved_share: float | None
    forecast_quantile: float
    floor_quantile: float
    unreachable: str | None = None
    ttft_attainment: float | None = None
    trailing_ttft_attainment: float | None = None
    utilization: float | None = None


@dataclass(frozen=True, slots=True)
class OperatingPoint:
    """What one decision reads to meet the objective: the forecast quantiles (pre-warm and floor)
    and the utilization of each replica's capacity the load and forecast asks are sized at."""

    forecast: float
    floor: float
    utilization: float


def observe(
    now: float, observations: Observations, policy: ScalingPolicy, state: ObjectiveState
) -> ObjectiveState:
    """Fold this tick's measured shortfall into the trailing totals and move the level.

    Example: objective 0.01, load 100 rps against 9 ready replicas of 10 rps for 15 s at a trailing
    mean of 100 rps: shortfall 10 rps, step 0.1 * 15/3600 * (10 - 1) / 1 = +0.00375.
    """
    objective = policy.objective_unserved_share
    if objective is None:
        return state
    level = (
        _logit(policy.forecast_floor_quantile or DEFAULT_FLOOR_QUANTILE)
        if state.level is None
        else state.level
    )
    ready_now = observations.ready_replicas
    if ready_now is None:
        ready_now = observations.current_replicas
    memory = tuple((at, n) for at, n in state.ready if now - READY_MEMORY_SECONDS <= at < now)
    if ready_now is not None:
        memory = (*memory, (now, ready_now))
    load = usable_value(observations.load, now, policy.stale_after_seconds)
    last_at, state = state.last_at, replace(state, level=level, ready=memory, last_at=now)
    capacity_per_replica = policy.replica_capacity_rps
    # No capacity known (none set, none learned yet): nothing says what the replicas could serve,
    # so nothing is measured, as with missing load.
    if load is None or capacity_per_replica is None or last_at is None or now <= last_at or not memory:
        return state
    dt = min(now - last_at, MAX_TICK_SECONDS)
    reading = observations.load
    end = now if reading is None else reading.observed_at
    capacity = _ready_during(memory, end) * capacity_per_replica
    loads, variance = _spread(state, end, load)
    shortfall = expected_shortfall(load, capacity, math.sqrt(variance))
    decay = math.exp(-dt / TRAILING_SECONDS)
    demand = state.demand * decay + load * dt
    unserved = state.unserved * decay + shortfall * dt
    # Decayed the same way, so that demand / seconds is the trailing mean load.
    seconds = state.seconds * decay + dt
    mean_load = demand / seconds
    allowed = _allowed_ttft_misses(policy)
    over = None if allowed is None else _ttft_share_over(now, observations, policy)
    timed, late = state.timed * decay, state.late * decay
    if over is not None:
        timed, late = timed + load * dt, late + over * load * dt
    if mean_load > 0:
        excess = (shortfall - objective * load) / (objective * mean_load)
        if allowed is not None:
            # Without a usable TTFT reading the latency may be missing its target unseen.
            latency = 0.0 if over is None else (over - allowed) / allowed * load / mean_load
            excess = max(excess, latency)
        step = RATE_PER_HOUR * dt / 3600 * excess
        at_max = memory[-1][1] >= policy.max_replicas
        ceiling = max(TOP_LEVEL, level) if at_max else HIGHEST_LEVEL
        level = min(ceiling, max(LOWEST_LEVEL, level + step))
    return replace(
        state,
        level=level,
        demand=demand,
        unserved=unserved,
        seconds=seconds,
        timed=timed,
        late=late,
        loads=loads,
    )


def _ttft_objective(policy: ScalingPolicy) -> float | None:
    """The declared TTFT attainment, where a TTFT target makes it one (else None)."""
    if policy.ttft_target_seconds is None:
        return None
    return policy.objective_ttft_attainment


def _allowed_ttft_misses(policy: ScalingPolicy) -> float | None:
    attainment = _ttft_objective(policy)
    return None if attainment is None else 1 - attainment


def _ttft_share_over(now: float, observations: Observations, policy: ScalingPolicy) -> float | None:
    histogram = observations.ttft_histogram
    bound = policy.ttft_target_seconds
    if histogram is None or bound is None or histogram.age_seconds(now) > policy.stale_after_seconds:
        return None
    return share_over(histogram, bound)


def _spread(state: ObjectiveState, end: float, load: float) -> tuple[tuple[tuple[float, float], ...], float]:
    """The reading to remember and the variance of the load within this reading's window.

    Two readings `gap` seconds apart share all of their window but `gap` seconds at each end, so
    they differ by (new - old load) * gap / window, where old and new are the load over the
    `gap` that left the window and the one that entered it: scaled back by window / gap, the
    change is the step between two levels the window holds, and the spread of a window holding
    two levels is at most half their step (`SPREAD_SCALE` = 1/4 of its square). It is this
    tick's alone: on a load that steps every 10 minutes only the windows across a step hide
    seconds above capacity. Example: one-minute steps of 100 and 140 rps read every 15 s change
    by 10 rps a tick -> a step of 40 rps, a spread of at most 20 rps.
    """
    variance = 0.0
    if state.loads:
        at, previous = state.loads[-1]
        gap = end - at
        if 0 < gap <= READING_WINDOW_SECONDS:
            variance = ((load - previous) * READING_WINDOW_SECONDS / gap) ** 2 * SPREAD_SCALE
    return ((end, load),), variance


def expected_shortfall(load: float, capacity: float, spread: float) -> float:
    """Demand above capacity, in expectation over a window whose demand averages `load` with
    standard deviation `spread` (normal): a 60 s rate hides the seconds above capacity.

    Examples: spread 0 -> max(0, load - capacity); load = capacity, spread 10 -> 10 / sqrt(2 pi) = 3.99.
    """
    if spread <= 0:
        return max(0.0, load - capacity)
    z = (load - capacity) / spread
    return (load - capacity) * _normal_cdf(z) + spread * math.exp(-z * z / 2) / math.sqrt(2 * math.pi)


def _normal_cdf(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def _ready_during(memory: tuple[tuple[float, int], ...], end: float) -> float:
    """Mean ready count of the ticks inside the window ending at `end`; else the newest before it
    (else the oldest remembered).

    Example: ready 4, 4, 6, 8 at ticks 0, 15, 30, 45 and a reading observed at 40 -> (4 + 4 + 6) / 3.
    """
    inside = [n for at, n in memory if end - READING_WINDOW_SECONDS <= at <= end]
    if inside:
        return sum(inside) / len(inside)
    before = [n for at, n in memory if at <= end]
    return before[-1] if before else memory[-1][1]


def operating_point(policy: ScalingPolicy, state: ObjectiveState) -> OperatingPoint:
    """The quantiles to read: each set one of the policy's wins (an expert's override); else the
    objective's level; else the defaults (median pre-warm, 0.84 floor). The utilization is the
    policy's, raised while the level is below the lowest floor quantile (and the floor is
    chosen, not fixed).

    Example: target 0.7, level one logit unit below logit(0.1): half of HEADROOM_LEVELS, so
    0.7 + (0.9 - 0.7) / 2 = 0.8."""
    utilization = policy.target_utilization
    if policy.objective_unserved_share is None or state.level is None:
        chosen_floor, chosen_forecast = DEFAULT_FLOOR_QUANTILE, DEFAULT_FORECAST_QUANTILE
    else:
        # Above the top the level only counts misses still to be paid back.
        level = min(state.level, TOP_LEVEL)
        chosen_floor = _snap(_sigmoid(level))
        chosen_forecast = _snap(_sigmoid(level - PREWARM_OFFSET))
        depth = min(HEADROOM_LEVELS, _logit(LOWEST_FLOOR) - state.level)
        if depth > 0 and policy.forecast_floor_quantile is None:
            hottest = 1 - (1 - utilization) * KEPT_HEADROOM
            utilization += (hottest - utilization) * depth / HEADROOM_LEVELS
    return OperatingPoint(
        forecast=policy.forecast_quantile if policy.forecast_quantile is not None else chosen_forecast,
        floor=policy.forecast_floor_quantile if policy.forecast_floor_quantile is not None else chosen_floor,
        utilization=utilization,
    )


def status(
    policy: ScalingPolicy, state: ObjectiveState, chosen: OperatingPoint, replicas: int
) -> ObjectiveStatus | None:
    objective = policy.objective_unserved_share
    if objective is None:
        return None
    trailing = state.unserved / state.demand if state.demand > 0 else None
    attainment = _ttft_objective(policy)
    trailing_attainment = _trailing_attainment(state) if attainment is not None else None
    missed = []
    if trailing is not None and trailing > objective:
        missed.append(f"trailing unserved share {trailing:.3g} is above the objective {objective:g}")
    if attainment is not None and trailing_attainment is not None and trailing_attainment < attainment:
        missed.append(
            f"trailing TTFT attainment {trailing_attainment:.4g} is below the objective {attainment:g}"
        )
    unreachable = None
    if missed and replicas >= policy.max_replicas:
        unreachable = (
            f"{' and '.join(missed)} at max_replicas={policy.max_replicas}: raise max_replicas or"
            " the objective"
        )
    return ObjectiveStatus(
        objective,
        trailing,
        chosen.forecast,
        chosen.floor,
        unreachable,
        attainment,
        trailing_attainment,
        chosen.utilization,
    )


def _trailing_attainment(state: ObjectiveState) -> float | None:
    return 1 - state.late / state.timed if state.timed > 0 else None


def within_objective(policy: ScalingPolicy, state: ObjectiveState) -> bool:
    """Whether the trailing unserved share is at or below the objective and, with a latency
    objective, the trailing TTFT attainment at or above its own (true without an objective, and
    before any demand or timed request: nothing has been missed yet).

    Example: objective 0.001, a trailing day of 265 requests with one unserved -> 0.0038: false
    until the miss has decayed below a quarter of its weight, about a day and a third later.
    """
    objective = policy.objective_unserved_share
    if objective is None:
        return True
    if state.demand > 0 and state.unserved / state.demand > objective:
        return False
    required = _ttft_objective(policy)
    attainment = _trailing_attainment(state)
    return required is None or attainment is None or attainment >= required


def _snap(quantile: float) -> float:
    """The grid quantile a forecast path is read at: the nearest at or above (safer side)."""
    return next((q for q in OBJECTIVE_QUANTILES if q >= quantile - 1e-12), OBJECTIVE_QUANTILES[-1])


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))

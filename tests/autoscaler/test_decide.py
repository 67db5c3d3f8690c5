"""decide(): the blended ask, the stale-data hold, panic, and HPA behavior, as tables and a scenario."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.decide import decide, scale_down_window
from autoscaler.decision import DecisionState, Reason, Recommendation, ScaleEvent
from autoscaler.observations import Observations, Reading
from autoscaler.policy import RatePolicy, RatePolicyType, ScalingPolicy, ScalingRules, SelectPolicy
from forecasting.forecast import Forecast

NOW = 100_000.0
# 10 rps per replica at the target: 70 rps -> 7 replicas.
BASE = ScalingPolicy(replica_capacity_rps=10.0, target_utilization=1.0).validate()
CALM = replace(BASE, panic_threshold=100.0).validate()
SIGNALS = replace(
    BASE, p99_latency_target_seconds=0.2, queue_depth_target_per_replica=5.0, gpu_utilization_target=0.6
).validate()
# An LLM engine's: KV cache at the default 0.8, TTFT p99 bound 2 s.
LLM = replace(BASE, ttft_target_seconds=2.0, panic_threshold=100.0).validate()
# No capacity set or learned: queue target 5 per replica, no scale-down window.
UNKNOWN_CAPACITY = replace(
    LLM,
    replica_capacity_rps=None,
    queue_depth_target_per_replica=5.0,
    scale_down=replace(LLM.scale_down, stabilization_window_seconds=0.0),
).validate()
LEARNED = replace(BASE, capacity_learned=True).validate()
NO_DOWN_WINDOW = replace(
    CALM, scale_down=replace(CALM.scale_down, stabilization_window_seconds=0.0)
).validate()


def _obs(
    load: float | None = None,
    current: int | None = 4,
    ready: int | None = None,
    load_age: float = 0.0,
    now: float = NOW,
    **readings: float,
) -> Observations:
    return Observations(
        at=now,
        current_replicas=current,
        ready_replicas=current if ready is None else ready,
        load=None if load is None else Reading(load, now - load_age),
        **{name: Reading(value, now) for name, value in readings.items()},  # type: ignore[arg-type]
    )


def _forecast(rps: float, start: float = NOW, steps: int = 20, error: float | None = None) -> Forecast:
    path = np.full(steps, rps)
    return Forecast(start=start, step_seconds=15.0, quantiles={0.9: path}, trailing_error=error)


@dataclass(frozen=True)
class Case:
    observations: Observations
    replicas: int
    reason: Reason
    policy: ScalingPolicy = BASE
    forecast: Forecast | None = None
    state: DecisionState = field(default_factory=DecisionState)


def _rate(select: SelectPolicy, pods: int, percent: int) -> ScalingRules:
    return ScalingRules(
        0.0,
        select,
        (RatePolicy(RatePolicyType.PODS, pods, 60.0), RatePolicy(RatePolicyType.PERCENT, percent, 60.0)),
    )


def _up(select: SelectPolicy) -> ScalingPolicy:
    return replace(CALM, scale_up=_rate(select, 2, 50)).validate()


def _down(select: SelectPolicy) -> ScalingPolicy:
    return replace(CALM, scale_down=_rate(select, 3, 50)).validate()


# min_replicas 0, no scale-down window: the last replica goes when nothing is expected.
TO_ZERO = replace(NO_DOWN_WINDOW, min_replicas=0).validate()

CASES = [
    pytest.param(Case(_obs(70.0), 7, Reason.LOAD), id="70 rps on 4 replicas scales to 7"),
    pytest.param(
        Case(_obs(0.0, current=1), 0, Reason.IDLE, policy=TO_ZERO, forecast=_forecast(0.0)),
        id="with min 0, no load and none forecast, the last replica goes",
    ),
    pytest.param(
        Case(_obs(10.0, current=10, load_age=200.0), 10, Reason.HELD_STALE), id="stale load never scales down"
    ),
    pytest.param(Case(_obs(None, current=10), 10, Reason.HELD_STALE), id="missing load never scales down"),
    pytest.param(
        Case(_obs(None, current=4, p99_latency=0.1), 4, Reason.HELD_STALE, policy=SIGNALS),
        id="without load a latency signal asking less still holds",
    ),
    pytest.param(
        Case(_obs(None, current=4, p99_latency=0.4), 8, Reason.LATENCY, policy=SIGNALS),
        id="without load a latency signal asking more still scales up",
    ),
    pytest.param(
        Case(_obs(70.0), 7, Reason.LOAD, forecast=None), id="missing forecast falls back to reactive"
    ),
    pytest.param(
        Case(_obs(20.0), 8, Reason.FORECAST, forecast=_forecast(80.0)),
        id="a forecast above the load pre-scales",
    ),
    pytest.param(
        Case(_obs(20.0), 2, Reason.LOAD, forecast=_forecast(80.0, error=0.5)),
        id="a low-trust forecast is ignored",
    ),
    pytest.param(
        Case(_obs(20.0), 5, Reason.FORECAST, forecast=_forecast(80.0, error=0.375)),
        id="a half-trusted forecast moves half way from 20 to 80 rps",
    ),
    pytest.param(
        Case(_obs(20.0), 2, Reason.LOAD, forecast=_forecast(80.0, start=NOW + 151.0)),
        id="a forecast beyond the lead window is not acted on yet",
    ),
    pytest.param(Case(_obs(200.0), 20, Reason.PANIC), id="panic jumps past the scale-up rate limit of 8"),
    pytest.param(
        Case(_obs(200.0), 8, Reason.RATE_LIMITED, policy=CALM), id="without panic the rate limit binds"
    ),
    pytest.param(
        Case(_obs(400.0), 30, Reason.MAX, policy=replace(BASE, max_replicas=30)), id="panic stops at max"
    ),
    pytest.param(
        Case(_obs(300.0, current=10), 15, Reason.RATE_LIMITED, policy=_up(SelectPolicy.MAX)),
        id="scale-up Max selects Percent 50 over Pods 2",
    ),
    pytest.param(
        Case(_obs(300.0, current=10), 12, Reason.RATE_LIMITED, policy=_up(SelectPolicy.MIN)),
        id="scale-up Min selects Pods 2 over Percent 50",
    ),
    pytest.param(
        Case(_obs(300.0, current=10), 10, Reason.RATE_LIMITED, policy=_up(SelectPolicy.DISABLED)),
        id="scale-up Disabled holds the count",
    ),
    pytest.param(
        Case(_obs(10.0, current=10), 5, Reason.RATE_LIMITED, policy=_down(SelectPolicy.MAX)),
        id="scale-down Max selects Percent 50 over Pods 3",
    ),
    pytest.param(
        Case(_obs(10.0, current=10), 7, Reason.RATE_LIMITED, policy=_down(SelectPolicy.MIN)),
        id="scale-down Min selects Pods 3 over Percent 50",
    ),
    pytest.param(
        Case(_obs(10.0, current=10), 10, Reason.RATE_LIMITED, policy=_down(SelectPolicy.DISABLED)),
        id="scale-down Disabled holds the count",
    ),
    pytest.param(
        Case(_obs(500.0, current=10), 12, Reason.MAX, policy=replace(CALM, max_replicas=12)),
        id="max clamps a scale-up",
    ),
    pytest.param(
        Case(_obs(0.0, current=4), 3, Reason.MIN, policy=replace(NO_DOWN_WINDOW, min_replicas=3)),
        id="min clamps a scale-down",
    ),
    pytest.param(
        Case(_obs(200.0, current=20), 10, Reason.MAX, policy=replace(CALM, max_replicas=10)),
        id="a user lowering max below the current count brings it down to max",
    ),
    pytest.param(
        Case(_obs(None, current=20), 10, Reason.MAX, policy=replace(CALM, max_replicas=10)),
        id="a lowered max applies even while the load is missing",
    ),
    pytest.param(
        Case(_obs(5.0, current=1), 2, Reason.MIN, policy=replace(CALM, min_replicas=2)),
        id="a user raising min above the current count brings it up to min",
    ),
    pytest.param(
        Case(_obs(40.0, p99_latency=0.4), 8, Reason.LATENCY, policy=SIGNALS), id="latency wins when it binds"
    ),
    pytest.param(
        Case(_obs(40.0, queue_depth=30.0), 6, Reason.QUEUE, policy=SIGNALS), id="queue wins when it binds"
    ),
    pytest.param(
        Case(_obs(40.0, gpu_utilization=0.9), 6, Reason.GPU, policy=SIGNALS), id="GPU wins when it binds"
    ),
    pytest.param(
        Case(
            _obs(70.0, p99_latency=0.2, queue_depth=20.0, gpu_utilization=0.6), 7, Reason.LOAD, policy=SIGNALS
        ),
        id="load wins when the other signals sit on target",
    ),
    pytest.param(
        Case(_obs(40.0, kv_cache_utilization=1.0), 5, Reason.KV_CACHE, policy=LLM),
        id="KV cache wins when it binds",
    ),
    pytest.param(Case(_obs(40.0, ttft=4.0), 8, Reason.TTFT, policy=LLM), id="TTFT wins when it binds"),
    pytest.param(
        Case(
            replace(_obs(40.0), kv_cache_utilization=Reading(1.0, NOW - 91.0), ttft=Reading(4.0, NOW - 91.0)),
            4,
            Reason.LOAD,
            policy=LLM,
        ),
        id="stale KV cache and TTFT readings ask nothing",
    ),
    pytest.param(
        Case(_obs(None, current=4, kv_cache_utilization=1.0), 5, Reason.KV_CACHE, policy=LLM),
        id="without load a full KV cache still scales up",
    ),
    pytest.param(
        Case(_obs(None, current=4, kv_cache_utilization=0.2, ttft=0.5), 4, Reason.HELD_STALE, policy=LLM),
        id="without load an idle KV cache and fast TTFT still hold",
    ),
    pytest.param(
        Case(_obs(40.0, current=10, queue_depth=10.0), 2, Reason.QUEUE, policy=UNKNOWN_CAPACITY),
        id="no capacity known: with the load live the queue scales down",
    ),
    pytest.param(
        Case(_obs(None, current=10, queue_depth=10.0), 10, Reason.HELD_STALE, policy=UNKNOWN_CAPACITY),
        id="no capacity known and no live load: nothing scales down",
    ),
    pytest.param(
        Case(
            _obs(40.0, current=10, queue_depth=10.0, load_age=200.0),
            10,
            Reason.HELD_STALE,
            policy=UNKNOWN_CAPACITY,
        ),
        id="no capacity known and a stale load: nothing scales down",
    ),
    pytest.param(
        Case(_obs(400.0, current=4, queue_depth=40.0), 8, Reason.QUEUE, policy=UNKNOWN_CAPACITY),
        id="no capacity known: the load asks nothing and the queue scales up",
    ),
    pytest.param(
        Case(
            _obs(20.0, current=4, kv_cache_utilization=0.8),
            4,
            Reason.KV_CACHE,
            policy=UNKNOWN_CAPACITY,
            forecast=_forecast(800.0),
        ),
        id="no capacity known: the forecast asks nothing",
    ),
    pytest.param(
        Case(_obs(70.0), 7, Reason.LOAD_LEARNED_CAPACITY, policy=LEARNED),
        id="a load bound on a learned capacity says so",
    ),
    pytest.param(
        Case(_obs(20.0), 8, Reason.FORECAST_LEARNED_CAPACITY, policy=LEARNED, forecast=_forecast(80.0)),
        id="a forecast bound on a learned capacity says so",
    ),
    pytest.param(
        Case(_obs(40.0, queue_depth=30.0), 6, Reason.QUEUE, policy=replace(SIGNALS, capacity_learned=True)),
        id="a queue bound says queue even with a learned capacity",
    ),
    pytest.param(
        Case(_obs(20.0, current=None), 7, Reason.HELD_STALE, state=DecisionState(last_replicas=7)),
        id="unknown current replicas holds the last published count",
    ),
    pytest.param(
        Case(_obs(90.0, current=None), 9, Reason.LOAD, state=DecisionState(last_replicas=7)),
        id="unknown current replicas still rises to a larger ask",
    ),
    pytest.param(
        Case(_obs(50.0, current=None), 5, Reason.LOAD),
        id="unknown current replicas on the first tick follows the ask",
    ),
    pytest.param(
        Case(_obs(None, current=None), 1, Reason.HELD_STALE),
        id="nothing known on the first tick publishes min",
    ),
    pytest.param(
        Case(
            _obs(30.0, current=10),
            10,
            Reason.STABILIZED,
            state=DecisionState(recommendations=(Recommendation(NOW - 100.0, 10),)),
        ),
        id="a recent higher recommendation holds a scale-down",
    ),
]


@pytest.mark.parametrize("case", CASES)
def test_decide(case: Case) -> None:
    decision, state = decide(NOW, case.observations, case.forecast, case.policy, case.state)
    assert (decision.replicas, decision.reason) == (case.replicas, case.reason)
    assert state.last_replicas == decision.replicas
    assert decision.at == NOW


# One case per Reason: a new Reason without a case here fails the lookup.
REASON_CASES = {
    Reason.LOAD: "70 rps on 4 replicas scales to 7",
    Reason.LATENCY: "latency wins when it binds",
    Reason.QUEUE: "queue wins when it binds",
    Reason.GPU: "GPU wins when it binds",
    Reason.KV_CACHE: "KV cache wins when it binds",
    Reason.TTFT: "TTFT wins when it binds",
    Reason.LOAD_LEARNED_CAPACITY: "a load bound on a learned capacity says so",
    Reason.FORECAST_LEARNED_CAPACITY: "a forecast bound on a learned capacity says so",
    Reason.FORECAST: "a forecast above the load pre-scales",
    Reason.PANIC: "panic jumps past the scale-up rate limit of 8",
    Reason.HELD_STALE: "stale load never scales down",
    Reason.IDLE: "with min 0, no load and none forecast, the last replica goes",
    Reason.STABILIZED: "a recent higher recommendation holds a scale-down",
    Reason.RATE_LIMITED: "without panic the rate limit binds",
    Reason.MIN: "min clamps a scale-down",
    Reason.MAX: "max clamps a scale-up",
}
_BY_ID = {param.id: param.values[0] for param in CASES}


@pytest.mark.parametrize("reason", list(Reason), ids=lambda reason: f"{reason} is reachable")
def test_every_reason_is_reachable(reason: Reason) -> None:
    case = _BY_ID[REASON_CASES[reason]]
    decision, _ = decide(NOW, case.observations, case.forecast, case.policy, case.state)
    assert decision.reason is reason


def test_decision_reports_every_live_signal_and_the_forecast() -> None:
    decision, _ = decide(
        NOW, _obs(40.0, p99_latency=0.4), _forecast(30.0, error=0.375), SIGNALS, DecisionState()
    )
    # trust 0.5: 40 + 0.5 * (30 - 40) = 35 rps -> 4 replicas
    assert decision.recommendations == {"load": 4, "p99_latency": 8, "forecast": 4}
    assert decision.forecast_rps == pytest.approx(35.0)
    assert decision.forecast_trust == pytest.approx(0.5)
    assert decision.lead_seconds == pytest.approx(150.0)


def test_forecast_prescales_one_lead_before_the_load_and_not_earlier() -> None:
    # Forecast 20 rps until NOW + 600, 80 rps from then; lead = 120 s cold start + 30 s delay.
    path = np.array([20.0] * 40 + [80.0] * 40)
    forecast = Forecast(start=NOW, step_seconds=15.0, quantiles={0.9: path})
    for offset, replicas, reason in [
        (435.0, 2, Reason.LOAD),  # the window [435, 585] ends before the 80 rps step at 600
        (449.0, 2, Reason.LOAD),  # [449, 599]: still one second short
        (450.0, 8, Reason.FORECAST),  # [450, 600] touches the step: a replica started now is ready at 600
    ]:
        decision, _ = decide(NOW + offset, _obs(20.0, now=NOW + offset), forecast, BASE, DecisionState())
        assert (decision.replicas, decision.reason) == (replicas, reason), offset


def test_learned_cold_start_shortens_the_lead() -> None:
    path = np.array([20.0] * 40 + [80.0] * 40)
    forecast = Forecast(start=NOW, step_seconds=15.0, quantiles={0.9: path})
    # With a learned 30 s start the lead is 60 s: at 450 the 600 step is not in view yet.
    observations = replace(_obs(20.0, now=NOW + 450.0), cold_start_seconds=30.0)
    decision, _ = decide(NOW + 450.0, observations, forecast, BASE, DecisionState())
    assert (decision.replicas, decision.reason, decision.lead_seconds) == (2, Reason.LOAD, 60.0)


def test_panic_holds_its_peak_for_the_down_window_then_releases() -> None:
    state = DecisionState()
    decision, state = decide(NOW, _obs(200.0, current=4), None, BASE, state)
    assert (decision.replicas, decision.reason) == (20, Reason.PANIC)
    # Quiet from now on: 10 rps needs 1, but the panic holds 20 while the last panic tick is < 300 s old.
    for offset in range(15, 300, 15):
        decision, state = decide(NOW + offset, _obs(10.0, current=20, now=NOW + offset), None, BASE, state)
        assert (decision.replicas, decision.reason) == (20, Reason.PANIC), offset
    # 300 s after the last panic tick the panic ends and the 20 has left the down window.
    decision, state = decide(NOW + 300, _obs(10.0, current=20, now=NOW + 300), None, BASE, state)
    assert (decision.replicas, decision.reason) == (1, Reason.LOAD)
    assert state.last_panic_at is None


def test_a_second_burst_extends_the_panic() -> None:
    state = DecisionState()
    _, state = decide(NOW, _obs(200.0, current=4), None, BASE, state)
    _, state = decide(NOW + 150, _obs(300.0, current=10, now=NOW + 150), None, BASE, state)
    # 300 s after the first burst but 150 s after the second: still panicking at the higher peak.
    decision, state = decide(NOW + 300, _obs(10.0, current=30, now=NOW + 300), None, BASE, state)
    assert (decision.replicas, decision.reason) == (30, Reason.PANIC)


def test_down_window_holds_the_peak_then_releases() -> None:
    state = DecisionState()
    decision, state = decide(NOW, _obs(100.0, current=10), None, CALM, state)
    assert (decision.replicas, decision.reason) == (10, Reason.LOAD)
    for offset in range(15, 300, 15):
        decision, state = decide(NOW + offset, _obs(30.0, current=10, now=NOW + offset), None, CALM, state)
        assert (decision.replicas, decision.reason) == (10, Reason.STABILIZED), offset
    decision, state = decide(NOW + 300, _obs(30.0, current=10, now=NOW + 300), None, CALM, state)
    assert (decision.replicas, decision.reason) == (3, Reason.LOAD)


def test_unknown_current_never_lowers_the_last_published_count() -> None:
    state = DecisionState(last_replicas=9, recommendations=(Recommendation(NOW - 10, 9),))
    decision, after = decide(NOW, _obs(0.0, current=None), None, BASE, state)
    assert (decision.replicas, decision.reason) == (9, Reason.HELD_STALE)
    # Windows are not fed by a tick measured against no known count.
    assert after.recommendations == state.recommendations


@pytest.mark.parametrize(
    ("now", "observations", "field_name"),
    [
        pytest.param(-1.0, _obs(10.0), "now", id="negative now names now"),
        pytest.param(math.nan, _obs(10.0), "now", id="NaN now names now"),
        pytest.param(math.inf, _obs(10.0), "now", id="infinite now names now"),
        pytest.param(
            NOW, _obs(10.0, current=-1, ready=0), "current_replicas", id="negative current is rejected"
        ),
        pytest.param(NOW, _obs(10.0, current=4, ready=-2), "ready_replicas", id="negative ready is rejected"),
    ],
)
def test_invalid_inputs_raise(now: float, observations: Observations, field_name: str) -> None:
    with pytest.raises(ValueError, match=field_name):
        decide(now, observations, None, BASE, DecisionState())


def test_ramp_and_drop_tick_by_tick() -> None:
    steps = [
        # (seconds, rps, replicas, reason): why
        (0, 40.0, 4, Reason.LOAD),  # 40 rps on 4 replicas is on target
        (15, 60.0, 6, Reason.LOAD),  # 60 rps needs 6; 6 / 4 = 1.5 is under the panic threshold of 2
        (30, 100.0, 10, Reason.LOAD),  # needs 10; up limit max(6 + 4, 2 * 6) = 12 lets it through
        (45, 140.0, 14, Reason.LOAD),  # needs 14; the +4 at 30 s is on the period edge, limit 20
        (60, 140.0, 14, Reason.LOAD),  # steady
        (75, 50.0, 14, Reason.STABILIZED),  # drop to 5 asked; the 14s of 45 s and 60 s are in the window
        (345, 50.0, 14, Reason.STABILIZED),  # the 14 of 60 s is still inside (345 - 300 = 45 < 60)
        (360, 50.0, 5, Reason.LOAD),  # every 14 has left the 300 s window: Percent 100 allows the drop
        (375, 50.0, 5, Reason.LOAD),  # steady at the new level
    ]
    state = DecisionState()
    current = 4
    previous = 0
    for seconds, rps, replicas, reason in steps:
        # Fill the gap with 15 s ticks at the same load so the window sees every tick.
        for tick in range(previous + 15, seconds, 15):
            decision, state = decide(
                NOW + tick, _obs(rps, current=current, now=NOW + tick), None, BASE, state
            )
            current = decision.replicas
        decision, state = decide(
            NOW + seconds, _obs(rps, current=current, now=NOW + seconds), None, BASE, state
        )
        assert (decision.replicas, decision.reason) == (replicas, reason), seconds
        current, previous = decision.replicas, seconds


_loads = st.one_of(st.none(), st.floats(min_value=0.0, max_value=5_000.0), st.just(math.nan))
_counts = st.integers(min_value=0, max_value=200)


@st.composite
def _inputs(draw: st.DrawFn) -> tuple[Observations, Forecast | None, ScalingPolicy, DecisionState]:
    min_replicas = draw(st.integers(min_value=0, max_value=20))
    max_replicas = draw(st.integers(min_value=max(1, min_replicas), max_value=150))
    policy = replace(SIGNALS, min_replicas=min_replicas, max_replicas=max_replicas).validate()
    current = draw(st.one_of(st.none(), _counts))
    load = draw(_loads)
    age = draw(st.sampled_from([0.0, 30.0, 200.0]))
    observations = Observations(
        at=NOW,
        current_replicas=current,
        ready_replicas=draw(st.one_of(st.none(), _counts)),
        load=None if load is None else Reading(load, NOW - age),
        p99_latency=draw(st.one_of(st.none(), st.builds(Reading, st.floats(0.0, 5.0), st.just(NOW)))),
        gpu_utilization=draw(st.one_of(st.none(), st.builds(Reading, st.floats(0.0, 1.0), st.just(NOW)))),
    )
    forecast = draw(
        st.one_of(
            st.none(),
            st.builds(
                _forecast,
                st.floats(0.0, 5_000.0),
                st.just(NOW),
                st.just(20),
                st.one_of(st.none(), st.floats(0.0, 1.0)),
            ),
        )
    )
    recs = draw(st.lists(st.builds(Recommendation, st.floats(NOW - 400, NOW), _counts), max_size=5))
    events = draw(
        st.lists(st.builds(ScaleEvent, st.floats(NOW - 100, NOW), st.integers(-20, 20)), max_size=3)
    )
    panic_at = draw(st.one_of(st.none(), st.floats(NOW - 400, NOW)))
    state = DecisionState(
        recommendations=tuple(recs),
        scale_events=tuple(events),
        last_panic_at=panic_at,
        panic_replicas=draw(_counts) if panic_at is not None else 0,
        last_replicas=draw(st.one_of(st.none(), _counts)),
    )
    return observations, forecast, policy, state


@settings(max_examples=200, deadline=None)
@given(_inputs())
def test_replicas_always_within_bounds(
    inputs: tuple[Observations, Forecast | None, ScalingPolicy, DecisionState],
) -> None:
    observations, forecast, policy, state = inputs
    decision, after = decide(NOW, observations, forecast, policy, state)
    assert policy.min_replicas <= decision.replicas <= policy.max_replicas
    assert after.last_replicas == decision.replicas


@settings(max_examples=200, deadline=None)
@given(_inputs(), st.sampled_from(["missing", "stale"]))
def test_missing_or_stale_load_never_drops_below_current(
    inputs: tuple[Observations, Forecast | None, ScalingPolicy, DecisionState], how: str
) -> None:
    observations, forecast, policy, state = inputs
    load = None if how == "missing" else Reading(1.0, NOW - policy.stale_after_seconds - 1)
    observations = replace(observations, load=load)
    decision, _ = decide(NOW, observations, forecast, policy, state)
    current = observations.current_replicas
    if current is None:
        current = state.last_replicas if state.last_replicas is not None else policy.min_replicas
    assert decision.replicas >= min(current, policy.max_replicas)


@settings(max_examples=100, deadline=None)
@given(_inputs())
def test_decide_is_deterministic(
    inputs: tuple[Observations, Forecast | None, ScalingPolicy, DecisionState],
) -> None:
    first = decide(NOW, *inputs)
    second = decide(NOW, *inputs)
    assert first == second


def _banded(median: float, upper: float, error: float | None = None, maturity: float = 1.0) -> Forecast:
    """Median and p90 paths; the default policy pre-warms on the median and holds on the p90
    (its floor quantile 0.84 reads the nearest higher path)."""
    paths = {0.5: np.full(20, median), 0.9: np.full(20, upper)}
    return Forecast(start=NOW, step_seconds=15.0, quantiles=paths, trailing_error=error, maturity=maturity)


@pytest.mark.parametrize(
    ("current", "load", "forecast", "expected"),
    [
        pytest.param(10, 30.0, _banded(20.0, 80.0), (8, Reason.FORECAST), id="the floor holds 8 of 10"),
        pytest.param(10, 30.0, _banded(20.0, 20.0), (3, Reason.LOAD), id="a floor below the load lets go"),
        pytest.param(4, 30.0, _banded(20.0, 80.0), (4, Reason.FORECAST), id="the floor never adds replicas"),
        pytest.param(4, 30.0, _banded(60.0, 80.0), (6, Reason.FORECAST), id="the median pre-warms above it"),
        pytest.param(
            10,
            30.0,
            _banded(20.0, 80.0, error=0.375),
            (6, Reason.FORECAST),
            id="half trust: 30 + (80 - 30) / 2",
        ),
        pytest.param(10, 30.0, _banded(20.0, 80.0, error=0.6), (3, Reason.LOAD), id="no trust, no hold"),
    ],
)
def test_forecast_floor(current: int, load: float, forecast: Forecast, expected: tuple[int, Reason]) -> None:
    decision, _ = decide(NOW, _obs(load, current=current), forecast, CALM, DecisionState())
    assert (decision.replicas, decision.reason) == expected


@pytest.mark.parametrize(
    ("forecast", "floor"),
    [
        pytest.param(_banded(20.0, 80.0), 8, id="the floor it held is reported"),
        pytest.param(_banded(20.0, 20.0), 2, id="a floor below the load is reported too"),
        pytest.param(None, None, id="no forecast, no floor"),
    ],
)
def test_decision_reports_the_forecast_floor(forecast: Forecast | None, floor: int | None) -> None:
    decision, _ = decide(NOW, _obs(30.0, current=10), forecast, CALM, DecisionState())
    assert decision.forecast_floor_replicas == floor


@pytest.mark.parametrize(
    ("error", "asked_ago", "expected", "maturity"),
    [
        pytest.param(None, 100.0, (3, Reason.LOAD), 1.0, id="full trust: no window, the floor decides"),
        pytest.param(0.375, 100.0, (10, Reason.STABILIZED), 1.0, id="half trust: a 150 s window holds"),
        pytest.param(0.375, 200.0, (3, Reason.LOAD), 1.0, id="half trust: released after 150 s"),
        pytest.param(0.6, 200.0, (10, Reason.STABILIZED), 1.0, id="no trust: HPA's 300 s window"),
        pytest.param(
            None, 200.0, (10, Reason.STABILIZED), 0.2, id="a fifth of its hour seen: a 240 s window holds"
        ),
        pytest.param(None, 250.0, (3, Reason.LOAD), 0.2, id="a fifth of its hour seen: released after 240 s"),
    ],
)
def test_a_trusted_forecast_replaces_the_scale_down_window(
    error: float | None, asked_ago: float, expected: tuple[int, Reason], maturity: float
) -> None:
    state = DecisionState(recommendations=(Recommendation(NOW - asked_ago, 10),))
    forecast = _banded(20.0, 20.0, error, maturity)
    decision, _ = decide(NOW, _obs(30.0, current=10), forecast, CALM, state)
    assert (decision.replicas, decision.reason) == expected


def test_hpa_window_is_whole_again_when_the_forecast_goes_away() -> None:
    state = DecisionState(recommendations=(Recommendation(NOW - 200, 10),))
    decision, state = decide(NOW, _obs(30.0, current=10), _banded(20.0, 20.0), CALM, state)
    assert decision.replicas == 3
    # The scale target has not applied the 3 yet; the ask of 10 from 215 s ago is still inside
    # HPA's 300 s window, so without the forecast it holds again.
    decision, _ = decide(NOW + 15, _obs(30.0, current=10, now=NOW + 15), None, CALM, state)
    assert (decision.replicas, decision.reason) == (10, Reason.STABILIZED)


@pytest.mark.parametrize(("trust", "window"), [(1.0, 0.0), (0.5, 150.0), (0.0, 300.0)])
def test_scale_down_window_slides_with_trust(trust: float, window: float) -> None:
    assert scale_down_window(trust, BASE) == pytest.approx(window)


def test_a_clock_stepping_back_neither_caps_a_scale_up_nor_opens_the_down_window() -> None:
    state = DecisionState()
    decision, state = decide(NOW, _obs(20.0, current=2), None, CALM, state)
    assert decision.replicas == 2
    # An NTP correction: the next tick is 5 s earlier. The older, lower ask must not cap it.
    decision, state = decide(NOW - 5, _obs(30.0, current=2, now=NOW - 5), None, CALM, state)
    assert (decision.replicas, decision.reason) == (3, Reason.LOAD)
    # The asks stamped in the "future" still hold replicas through the scale-down window.
    decision, state = decide(NOW + 10, _obs(10.0, current=3, now=NOW + 10), None, CALM, state)
    assert (decision.replicas, decision.reason) == (3, Reason.STABILIZED)
    assert all(r.at <= NOW + 10 for r in state.recommendations)


@pytest.mark.parametrize(
    ("readings", "policy"),
    [
        pytest.param({"p99_latency": 1e308}, SIGNALS, id="latency over 0.2 s"),
        pytest.param(
            {"queue_depth": 1e308},
            replace(SIGNALS, queue_depth_target_per_replica=0.5).validate(),
            id="queue over 0.5 per replica",
        ),
    ],
)
def test_absurd_but_finite_readings_ask_for_the_most_the_rate_limit_allows(
    readings: dict[str, float], policy: ScalingPolicy
) -> None:
    # 1e308 over a target below 1 overflows to infinity before ceil().
    decision, _ = decide(NOW, _obs(10.0, current=4, **readings), None, policy, DecisionState())
    # Scale-up policy: max(4 pods, 100 %) per 15 s from 4 replicas.
    assert (decision.replicas, decision.reason) == (8, Reason.RATE_LIMITED)


def test_a_panic_held_through_missing_load_says_it_is_holding() -> None:
    """Finding 5: during a Prometheus outage the published reason stayed `panic`. The peak still
    holds (nothing scales down without load), but the reason names the missing data."""
    decision, state = decide(NOW, _obs(200.0, current=4), None, BASE, DecisionState())
    assert (decision.replicas, decision.reason) == (20, Reason.PANIC)
    later = NOW + 30
    decision, state = decide(later, _obs(None, current=20, now=later), None, BASE, state)
    assert (decision.replicas, decision.reason) == (20, Reason.HELD_STALE)
    stale = NOW + 60
    decision, _ = decide(stale, _obs(10.0, current=20, now=stale, load_age=200.0), None, BASE, state)
    assert (decision.replicas, decision.reason) == (20, Reason.HELD_STALE)

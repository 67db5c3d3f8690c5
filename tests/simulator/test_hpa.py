"""The HPA v2 controller simulation against k8s-contract.md section 3: proposals, tolerance,
failures, the legacy and behavior normalizations, and the worked example of 3.10 tick by tick."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pytest

from autoscaler.policy import RatePolicy, RatePolicyType, ScalingRules, SelectPolicy
from autoscaler.stabilization import Limit
from forecasting import LoadSeries
from simulator.hpa import (
    AbleToScale,
    ExternalTarget,
    HpaAutoscaler,
    HpaBehavior,
    HpaSpec,
    HpaState,
    Scale,
    ScalingActive,
    TargetType,
    compute_replicas_for_metrics,
    external_replicas,
    hpa_sync,
    milli_value,
)
from simulator.view import ClusterView

AVERAGE_10 = ExternalTarget(TargetType.AVERAGE_VALUE, 10.0)
VALUE_10 = ExternalTarget(TargetType.VALUE, 10.0)


def spec_with(
    behavior: HpaBehavior | None = None,
    *,
    legacy: bool = False,
    min_replicas: int = 1,
    max_replicas: int = 100,
    metrics: tuple[ExternalTarget, ...] = (AVERAGE_10,),
) -> HpaSpec:
    return HpaSpec(
        metrics=metrics,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        behavior=None if legacy else (behavior or HpaBehavior()),
    )


def pods(replicas: int, ready: int | None = None) -> Scale:
    """A scale whose pods all exist (and are ready unless told)."""
    return Scale(replicas, replicas, replicas if ready is None else ready)


@pytest.mark.parametrize(
    ("quantity", "milli"),
    [
        pytest.param(95.0, 95_000, id="whole units"),
        pytest.param(2.007, 2007, id="decimal milli is exact, not binary-rounded up"),
        pytest.param(0.0001, 1, id="below a milli rounds up to 1m"),
        pytest.param(2.0015, 2002, id="half a milli rounds up"),
        pytest.param(1e30, 2**63 - 1, id="overflow caps at int64"),
    ],
)
def test_milli_value_rounds_like_quantity(quantity: float, milli: int) -> None:
    assert milli_value(quantity) == milli


@pytest.mark.parametrize(
    ("target", "values", "scale", "expected"),
    [
        pytest.param(
            AVERAGE_10, [95.0], pods(4), 10, id="averagevalue proposes ceil(total / per-pod target)"
        ),
        pytest.param(AVERAGE_10, [50.0, 45.0], pods(4), 10, id="items of one metric are summed"),
        pytest.param(AVERAGE_10, [90.0], pods(10), 10, id="ratio 0.9 is inside the band"),
        pytest.param(AVERAGE_10, [89.0], pods(10), 9, id="ratio 0.89 scales down"),
        pytest.param(AVERAGE_10, [110.0], pods(10), 10, id="ratio 1.1 is inside the band"),
        pytest.param(AVERAGE_10, [111.0], pods(10), 12, id="ratio 1.11 scales up"),
        pytest.param(
            AVERAGE_10,
            [80.0],
            Scale(10, 8, 8),
            8,
            id="averagevalue in band returns status.replicas, not spec",
        ),
        pytest.param(AVERAGE_10, [25.0], Scale(0, 0, 0), 3, id="no pods yet: ratio +inf proposes the total"),
        pytest.param(AVERAGE_10, [0.0], Scale(0, 0, 0), 0, id="no pods and no load: ratio NaN proposes 0"),
        pytest.param(
            VALUE_10, [15.0], Scale(10, 10, 5), 8, id="value multiplies by ready pods: 10, 5, 1.5 -> 8"
        ),
        pytest.param(VALUE_10, [10.5], Scale(10, 10, 5), 10, id="value in band returns spec.replicas"),
        pytest.param(VALUE_10, [30.0], Scale(3, 0, 0), None, id="value with no pods is an error"),
        pytest.param(VALUE_10, [25.0], Scale(0, 0, 0), 3, id="value at zero replicas proposes ceil(ratio)"),
        pytest.param(AVERAGE_10, [float("nan")], pods(4), None, id="unparseable sample is a failure"),
    ],
)
def test_external_replicas(
    target: ExternalTarget, values: list[float], scale: Scale, expected: int | None
) -> None:
    assert external_replicas(target, values, scale, tolerance=0.1) == expected


@pytest.mark.parametrize(
    ("values", "current", "expected"),
    [
        pytest.param([None, None], 4, None, id="all metrics failed"),
        pytest.param([[20.0], None], 4, None, id="partial data below current never scales down"),
        pytest.param([[95.0], None], 4, 10, id="partial data above current scales up"),
        pytest.param([[20.0], [95.0]], 4, 10, id="max over metrics"),
    ],
)
def test_compute_replicas_for_metrics(
    values: Sequence[Sequence[float] | None], current: int, expected: int | None
) -> None:
    spec = spec_with(metrics=(AVERAGE_10, AVERAGE_10))
    assert compute_replicas_for_metrics(spec, pods(current), values) == expected


@pytest.mark.parametrize(
    ("scale", "min_replicas", "max_replicas", "desired", "rescaled", "active", "limit"),
    [
        pytest.param(pods(0), 1, 10, 0, False, ScalingActive.SCALING_DISABLED, Limit.WITHIN_RANGE, id="zero"),
        pytest.param(
            pods(12), 1, 10, 10, True, ScalingActive.VALID_METRIC_FOUND, Limit.TOO_MANY, id="above max"
        ),
        pytest.param(
            pods(1), 3, 10, 3, True, ScalingActive.VALID_METRIC_FOUND, Limit.TOO_FEW, id="below min"
        ),
    ],
)
def test_out_of_range_branches_skip_metrics(
    scale: Scale,
    min_replicas: int,
    max_replicas: int,
    desired: int,
    rescaled: bool,
    active: ScalingActive,
    limit: Limit,
) -> None:
    spec = spec_with(min_replicas=min_replicas, max_replicas=max_replicas)
    # The metric would ask for 50 pods; none of these branches reads it.
    result, _ = hpa_sync(0.0, spec, scale, [[500.0]], HpaState())
    assert (result.desired_replicas, result.rescaled, result.scaling_active, result.scaling_limited) == (
        desired,
        rescaled,
        active,
        limit,
    )


@pytest.mark.parametrize("legacy", [pytest.param(False, id="behavior"), pytest.param(True, id="legacy")])
def test_metric_failure_holds_and_stores_no_recommendation(legacy: bool) -> None:
    spec = spec_with(legacy=legacy)
    _, state = hpa_sync(0.0, spec, pods(10), [[100.0]], HpaState())
    result, after = hpa_sync(15.0, spec, pods(10), [None], state)
    assert result.desired_replicas == 10
    assert not result.rescaled
    assert result.scaling_active is ScalingActive.FAILED_GET_EXTERNAL_METRIC
    assert after == state


def run_ticks(
    spec: HpaSpec, ticks: Sequence[tuple[float, float]], start_replicas: int
) -> list[tuple[float, int, AbleToScale, Limit]]:
    """Sync at each (time, total rps); pods appear at once so status follows spec."""
    state = HpaState()
    current = start_replicas
    trace = []
    for now, rps in ticks:
        result, state = hpa_sync(now, spec, pods(current), [[rps]], state)
        current = result.desired_replicas
        trace.append((now, current, result.able_to_scale, result.scaling_limited))
    return trace


def test_worked_example_3_10_tick_by_tick() -> None:
    ticks = [(0.0, 95.0), (5.0, 95.0), (15.0, 95.0)] + [(t, 20.0) for t in range(30, 331, 15)]
    trace = run_ticks(spec_with(), ticks, start_replicas=4)
    by_time = {now: (replicas, able, limit) for now, replicas, able, limit in trace}
    # 95 rps over 4 pods at 10 each -> proposal 10, capped at max(4 + 4, ceil(4 * 2)) = 8.
    assert by_time[0.0] == (8, AbleToScale.READY_FOR_NEW_SCALE, Limit.SCALE_UP_LIMIT)
    # Within 15 s of the +4 event the start is still 4, so the cap stays 8.
    assert by_time[5.0] == (8, AbleToScale.READY_FOR_NEW_SCALE, Limit.SCALE_UP_LIMIT)
    # The event left the period: cap max(8 + 4, 16) = 16 lets 10 through.
    assert by_time[15.0] == (10, AbleToScale.READY_FOR_NEW_SCALE, Limit.WITHIN_RANGE)
    # Load 20 proposes 2, but the 300 s down window holds the 10 recommended up to t=15.
    for now in range(30, 301, 15):
        assert by_time[float(now)] == (10, AbleToScale.SCALE_DOWN_STABILIZED, Limit.WITHIN_RANGE), now
    # At 315 the t=15 sample is exactly 300 s old and the window is strict: down to the proposal.
    assert by_time[315.0] == (2, AbleToScale.READY_FOR_NEW_SCALE, Limit.WITHIN_RANGE)
    assert by_time[330.0][0] == 2


@pytest.mark.parametrize(
    ("current", "max_replicas", "expected", "limit"),
    [
        pytest.param(1, 100, 4, Limit.SCALE_UP_LIMIT, id="one pod may reach the minimum cap of 4"),
        pytest.param(3, 100, 6, Limit.SCALE_UP_LIMIT, id="three pods may double to 6"),
        pytest.param(10, 100, 20, Limit.SCALE_UP_LIMIT, id="ten pods may double to 20"),
        pytest.param(3, 5, 5, Limit.TOO_MANY, id="max replicas binds before the cap"),
    ],
)
def test_legacy_scale_up_cap(current: int, max_replicas: int, expected: int, limit: Limit) -> None:
    spec = spec_with(legacy=True, max_replicas=max_replicas)
    result, _ = hpa_sync(0.0, spec, pods(current), [[10_000.0]], HpaState())
    assert (result.desired_replicas, result.scaling_limited) == (expected, limit)


def test_legacy_window_is_five_minutes_inclusive() -> None:
    ticks = [(0.0, 100.0), (150.0, 20.0), (300.0, 20.0), (301.0, 20.0)]
    trace = run_ticks(spec_with(legacy=True), ticks, start_replicas=10)
    assert [replicas for _, replicas, _, _ in trace] == [10, 10, 10, 2]
    assert trace[2][2] is AbleToScale.SCALE_DOWN_STABILIZED
    # The behavior path's window is strict: the same history drops at exactly 300 s.
    behavior_trace = run_ticks(spec_with(), ticks, start_replicas=10)
    assert [replicas for _, replicas, _, _ in behavior_trace] == [10, 10, 2, 2]


def test_legacy_path_keeps_no_scale_events() -> None:
    _, state = hpa_sync(0.0, spec_with(legacy=True), pods(4), [[95.0]], HpaState())
    assert state.scale_events == ()


UP_MIXED = (RatePolicy(RatePolicyType.PODS, 4, 15.0), RatePolicy(RatePolicyType.PERCENT, 100, 15.0))
DOWN_MIXED = (RatePolicy(RatePolicyType.PODS, 2, 15.0), RatePolicy(RatePolicyType.PERCENT, 50, 15.0))


@pytest.mark.parametrize(
    ("up", "down", "rps", "expected", "limit"),
    [
        pytest.param(
            SelectPolicy.MAX, SelectPolicy.MAX, 1000.0, 20, Limit.SCALE_UP_LIMIT, id="up max: 10 -> 20"
        ),
        pytest.param(
            SelectPolicy.MIN, SelectPolicy.MAX, 1000.0, 14, Limit.SCALE_UP_LIMIT, id="up min: 10 -> 14"
        ),
        pytest.param(
            SelectPolicy.DISABLED, SelectPolicy.MAX, 1000.0, 10, Limit.SCALE_UP_LIMIT, id="up disabled holds"
        ),
        pytest.param(
            SelectPolicy.MAX, SelectPolicy.MAX, 10.0, 5, Limit.SCALE_DOWN_LIMIT, id="down max: largest drop 5"
        ),
        pytest.param(
            SelectPolicy.MAX,
            SelectPolicy.MIN,
            10.0,
            8,
            Limit.SCALE_DOWN_LIMIT,
            id="down min: smallest drop 8",
        ),
        pytest.param(
            SelectPolicy.MAX,
            SelectPolicy.DISABLED,
            10.0,
            10,
            Limit.SCALE_DOWN_LIMIT,
            id="down disabled holds",
        ),
    ],
)
def test_select_policies(
    up: SelectPolicy, down: SelectPolicy, rps: float, expected: int, limit: Limit
) -> None:
    behavior = HpaBehavior(
        scale_up=ScalingRules(0.0, up, UP_MIXED),
        scale_down=ScalingRules(0.0, down, DOWN_MIXED),
    )
    result, _ = hpa_sync(0.0, spec_with(behavior), pods(10), [[rps]], HpaState())
    assert (result.desired_replicas, result.scaling_limited) == (expected, limit)


def test_scale_up_window_takes_the_lowest_recent_recommendation() -> None:
    behavior = HpaBehavior(scale_up=ScalingRules(60.0, SelectPolicy.MAX, UP_MIXED))
    # 4 pods at 40 rps, then a spike to 95 rps: the 60 s up window still holds the 4 from t=0.
    trace = run_ticks(spec_with(behavior), [(0.0, 40.0), (15.0, 95.0), (45.0, 95.0), (60.0, 95.0)], 4)
    assert [replicas for _, replicas, _, _ in trace] == [4, 4, 4, 8]
    assert [able for _, _, able, _ in trace[1:3]] == [AbleToScale.SCALE_UP_STABILIZED] * 2
    # At 60 the t=0 samples are exactly 60 s old and leave the strict window: the lowest left is
    # 10, capped at max(4 + 4, 4 x 2) = 8.
    assert trace[3][3] is Limit.SCALE_UP_LIMIT


@dataclass
class FunctionMetrics:
    """A MetricsPipeline whose windowed rate is a function of the window's end (now - delay)."""

    rate_at: Callable[[float], float | None]
    calls: list[tuple[float, float, float]]

    def rate(self, now: float, window_seconds: float, delay_seconds: float) -> float | None:
        self.calls.append((now, window_seconds, delay_seconds))
        return self.rate_at(now - delay_seconds)

    def history(self, now: float, step_seconds: float, delay_seconds: float) -> LoadSeries:
        raise AssertionError("HPA reads only the windowed rate")


def test_autoscaler_reads_the_delayed_window_and_holds_without_data() -> None:
    metrics = FunctionMetrics(lambda end: None if end < 0 else 95.0, [])
    hpa = HpaAutoscaler(10.0, 1, 100)
    assert (hpa.name, hpa.tick_seconds) == ("hpa", 15.0)
    assert hpa.step(ClusterView(0.0, 4, 4, 4, metrics)) == 4
    assert hpa.last_result is not None
    assert hpa.last_result.scaling_active is ScalingActive.FAILED_GET_EXTERNAL_METRIC
    assert hpa.step(ClusterView(15.0, 4, 4, 4, metrics)) == 8
    assert metrics.calls == [(0.0, 60.0, 15.0), (15.0, 60.0, 15.0)]


def test_legacy_autoscaler_name_and_cap() -> None:
    metrics = FunctionMetrics(lambda end: 95.0, [])
    hpa = HpaAutoscaler(10.0, 1, 100, legacy=True)
    assert hpa.name == "hpa-legacy"
    # max(2 * 3, 4) = 6 where the behavior path would allow max(3 + 4, 6) = 7.
    assert hpa.step(ClusterView(0.0, 3, 3, 3, metrics)) == 6


@pytest.mark.parametrize(
    ("target", "min_replicas", "max_replicas"),
    [
        pytest.param(0.0, 1, 10, id="zero target"),
        pytest.param(10.0, 5, 3, id="min above max"),
    ],
)
def test_autoscaler_rejects_bad_settings(target: float, min_replicas: int, max_replicas: int) -> None:
    with pytest.raises(ValueError, match="replica"):
        HpaAutoscaler(target, min_replicas, max_replicas)

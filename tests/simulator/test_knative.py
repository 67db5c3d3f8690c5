"""The KPA decider and PA bounds against keda-knative.md section 6: rate limits on ready pods,
ceil rounding, panic enter/extend/leave, the initial panic, the scale-down delay, and the class
ticked over a piecewise-constant demand."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from forecasting import LoadSeries
from simulator.knative import (
    KnativeAutoscaler,
    KpaSettings,
    KpaState,
    apply_bounds,
    initial_kpa_state,
    kpa_decide,
)
from simulator.view import ClusterView

TEN_PER_POD = KpaSettings(target_rps_per_replica=10.0)


@dataclass(frozen=True)
class StepDemand:
    """A MetricsPipeline over demand of `levels[i][1]` rps from `levels[i][0]` seconds on, none
    before the first level; the rate is the exact mean over the seconds that have data."""

    levels: tuple[tuple[float, float], ...]

    def rate(self, now: float, window_seconds: float, delay_seconds: float) -> float | None:
        end = now - delay_seconds
        start = max(end - window_seconds, self.levels[0][0])
        if end <= start:
            return None
        bounds = [at for at, _ in self.levels[1:]] + [float("inf")]
        requests = sum(
            rps * max(0.0, min(end, until) - max(start, since))
            for (since, rps), until in zip(self.levels, bounds, strict=True)
        )
        return requests / (end - start)

    def history(self, now: float, step_seconds: float, delay_seconds: float) -> LoadSeries:
        raise AssertionError("KPA reads only windowed rates")


@pytest.mark.parametrize(
    ("settings", "ready", "stable_rps", "panic_rps", "expected"),
    [
        pytest.param(TEN_PER_POD, 5, 50.0, 50.0, 5, id="load at target holds"),
        pytest.param(TEN_PER_POD, 5, 51.0, 51.0, 6, id="ceil rounds 5.1 pods up"),
        pytest.param(TEN_PER_POD, 5, 50.0000001, 50.0, 5, id="window average rounded to 6 digits first"),
        pytest.param(TEN_PER_POD, 10, 0.0, 0.0, 5, id="scale-down limited to ready / 2"),
        pytest.param(TEN_PER_POD, 5, 0.0, 0.0, 2, id="floor(5 / 2) = 2"),
        pytest.param(TEN_PER_POD, 0, 0.0, 0.0, 0, id="no ready pods count as one: floor(1 / 2) = 0"),
        pytest.param(
            KpaSettings(10.0, max_scale_up_rate=2.0),
            1,
            100.0,
            100.0,
            2,
            id="scale-up limited to ceil(rate x ready)",
        ),
        pytest.param(
            KpaSettings(10.0, max_scale_up_rate=1.5), 3, 100.0, 100.0, 5, id="ceil(1.5 x 3) = 5, not 4"
        ),
    ],
)
def test_decider_targets_and_rate_limits(
    settings: KpaSettings, ready: int, stable_rps: float, panic_rps: float, expected: int
) -> None:
    result, _ = kpa_decide(0.0, settings, ready, stable_rps, panic_rps, KpaState())
    assert result is not None
    assert result.desired_pods == expected


def test_idle_revision_halves_per_tick() -> None:
    state = KpaState()
    ready = 10
    seen = [ready]
    for tick in range(1, 5):
        result, state = kpa_decide(2.0 * tick, TEN_PER_POD, ready, 0.0, 0.0, state)
        assert result is not None
        assert not result.panicking
        ready = result.desired_pods
        seen.append(ready)
    assert seen == [10, 5, 2, 1, 0]
    assert apply_bounds(0, min_replicas=0, max_replicas=0) == 1  # scale to zero is off


@pytest.mark.parametrize(
    ("panic_rps", "panicking"),
    [
        pytest.param(80.0, True, id="8 pods over 4 ready is exactly the threshold"),
        pytest.param(70.5, True, id="7.05 pods ceil to 8: the threshold compares ceil'd pods"),
        pytest.param(70.0, False, id="7 pods over 4 ready stays stable"),
    ],
)
def test_panic_threshold(panic_rps: float, panicking: bool) -> None:
    result, state = kpa_decide(0.0, TEN_PER_POD, 4, 40.0, panic_rps, KpaState())
    assert result is not None
    assert result.panicking is panicking
    assert (state.panic_since is not None) is panicking


def test_panic_enters_never_scales_down_and_leaves_after_a_stable_window() -> None:
    state = KpaState()
    # Burst: the 6 s window sees 80 rps, the 60 s window still 40; 8 / 4 ready = 2 -> panic at 8.
    result, state = kpa_decide(0.0, TEN_PER_POD, 4, 40.0, 80.0, state)
    assert result is not None
    assert (result.desired_pods, result.panicking) == (8, True)
    # A bigger burst extends panic and raises the high-water mark: 200 rps over 8 ready = 20 / 8.
    result, state = kpa_decide(10.0, TEN_PER_POD, 8, 60.0, 200.0, state)
    assert result is not None
    assert (result.desired_pods, result.panicking, state.panic_since) == (20, True, 10.0)
    # Load collapses: no scale-down while panicking, through exactly one stable window.
    for now in range(12, 71, 2):
        result, state = kpa_decide(float(now), TEN_PER_POD, 20, 30.0, 10.0, state)
        assert result is not None
        assert (result.desired_pods, result.panicking) == (20, True), now
    # 72 > 10 + 60: panic ends and the stable window decides, limited to halving: max(3, 20 / 2).
    result, state = kpa_decide(72.0, TEN_PER_POD, 20, 30.0, 10.0, state)
    assert result is not None
    assert (result.desired_pods, result.panicking) == (10, False)
    assert (state.panic_since, state.max_panic_pods) == (None, 0)


@pytest.mark.parametrize(
    ("ready", "expected_panic"),
    [
        pytest.param(3, True, id="more than one ready pod starts in panic"),
        pytest.param(1, False, id="one ready pod starts stable"),
        pytest.param(0, False, id="no ready pods start stable"),
    ],
)
def test_initial_panic_state(ready: int, expected_panic: bool) -> None:
    state = initial_kpa_state(100.0, ready)
    assert (state.panic_since is not None) is expected_panic
    result, _ = kpa_decide(102.0, TEN_PER_POD, ready, 0.0, 0.0, state)
    assert result is not None
    # Panicking holds the ready count with no load; stable mode may halve.
    assert result.desired_pods == (ready if expected_panic else ready // 2)


def test_scale_down_delay_holds_the_window_maximum() -> None:
    settings = KpaSettings(10.0, scale_down_delay_seconds=10.0)
    state = KpaState()
    result, state = kpa_decide(0.0, settings, 8, 80.0, 80.0, state)
    assert result is not None
    assert result.desired_pods == 8
    held = []
    for now in (2.0, 4.0, 6.0, 8.0, 10.0, 12.0):
        result, state = kpa_decide(now, settings, 8, 40.0, 40.0, state)
        assert result is not None
        held.append(result.desired_pods)
    # The 8 recorded at t=0 leaves the 10 s window (strictly) at t=10.
    assert held == [8, 8, 8, 8, 4, 4]


def test_no_data_skips_the_tick() -> None:
    state = initial_kpa_state(0.0, 5)
    result, after = kpa_decide(2.0, TEN_PER_POD, 5, None, 10.0, state)
    assert result is None
    assert after == state


@pytest.mark.parametrize(
    ("desired", "min_replicas", "max_replicas", "expected"),
    [
        pytest.param(7, 2, 10, 7, id="within bounds"),
        pytest.param(1, 2, 10, 2, id="min binds"),
        pytest.param(12, 2, 10, 10, id="max binds"),
        pytest.param(500, 0, 0, 500, id="max 0 is unlimited"),
        pytest.param(0, 0, 10, 1, id="zero becomes one with scale to zero off"),
    ],
)
def test_apply_bounds(desired: int, min_replicas: int, max_replicas: int, expected: int) -> None:
    assert apply_bounds(desired, min_replicas, max_replicas) == expected


def test_autoscaler_panics_on_a_burst_seen_by_the_panic_window() -> None:
    # 40 rps (4 pods at 10) until t=100, then 200 rps. At t=104, delay 1 s: the 6 s panic window
    # [97, 103] averages (3 x 40 + 3 x 200) / 6 = 120 -> 12 pods, 3x the 4 ready: panic. The 60 s
    # stable window [43, 103] averages (57 x 40 + 3 x 200) / 60 = 48 -> 5 pods.
    metrics = StepDemand(((0.0, 40.0), (100.0, 200.0)))
    kpa = KnativeAutoscaler(10.0, 1, 1000)
    assert (kpa.name, kpa.tick_seconds) == ("knative", 2.0)
    assert kpa.step(ClusterView(98.0, 4, 4, 4, metrics)) == 4
    assert kpa.step(ClusterView(104.0, 4, 4, 4, metrics)) == 12
    assert kpa.last_result is not None
    assert kpa.last_result.panicking


def test_autoscaler_restart_holds_scale_then_halves_per_tick() -> None:
    metrics = StepDemand(((0.0, 0.0),))
    kpa = KnativeAutoscaler(10.0, 1, 1000)
    replicas = 10
    seen = []
    for now in range(100, 170, 2):
        replicas = kpa.step(ClusterView(float(now), replicas, replicas, replicas, metrics))
        seen.append(replicas)
    # Initial panic at t=100 holds 10 while now <= 160; then 10 -> 5 -> 2 -> 1, floored at min 1.
    assert seen[: (160 - 100) // 2 + 1] == [10] * 31
    assert seen[31:] == [5, 2, 1, 1]


def test_autoscaler_holds_spec_without_data() -> None:
    metrics = StepDemand(((50.0, 100.0),))
    kpa = KnativeAutoscaler(10.0, 1, 1000)
    assert kpa.step(ClusterView(10.0, 7, 7, 3, metrics)) == 7
    assert kpa.last_result is None


@pytest.mark.parametrize(
    ("target", "up", "down", "named"),
    [
        pytest.param(0.0, 1000.0, 2.0, "target_rps_per_replica=0.0", id="zero target"),
        pytest.param(10.0, 1.0, 2.0, "max_scale_up_rate=1.0", id="scale-up rate of 1"),
        pytest.param(10.0, 1000.0, 0.5, "max_scale_down_rate=0.5", id="scale-down rate below 1"),
    ],
)
def test_autoscaler_rejects_bad_settings(target: float, up: float, down: float, named: str) -> None:
    with pytest.raises(ValueError, match=re.escape(named)):
        KnativeAutoscaler(target, 1, 10, max_scale_up_rate=up, max_scale_down_rate=down)

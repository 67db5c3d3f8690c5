"""Reactive signals (tolerance band, unusable readings) and pre-warming from the forecast."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from autoscaler.objective import ObjectiveState, operating_point
from autoscaler.observations import Observations, Reading
from autoscaler.policy import OBJECTIVE_QUANTILES, ScalingPolicy
from autoscaler.prewarm import forecast_trust, lead_seconds, prewarm, scaling_goal
from autoscaler.reactive import (
    gpu_replicas,
    kv_cache_replicas,
    latency_replicas,
    load_replicas,
    queue_replicas,
    ttft_replicas,
)
from forecasting.forecast import Forecast
from forecasting.model import ScalingGoal

NOW = 10_000.0
# 10 rps per replica at the target, so 70 rps -> 7 replicas.
POLICY = ScalingPolicy(
    replica_capacity_rps=10.0,
    target_utilization=1.0,
    p99_latency_target_seconds=0.2,
    queue_depth_target_per_replica=5.0,
    gpu_utilization_target=0.6,
).validate()
BARE = ScalingPolicy(replica_capacity_rps=10.0, target_utilization=1.0).validate()
# An LLM engine's policy: KV cache at the default 0.8, TTFT p99 bound 2 s.
LLM = ScalingPolicy(replica_capacity_rps=10.0, target_utilization=1.0, ttft_target_seconds=2.0).validate()
NO_KV = ScalingPolicy(replica_capacity_rps=10.0, kv_cache_utilization_target=None).validate()
UNKNOWN_CAPACITY = ScalingPolicy(replica_capacity_rps=None, queue_depth_target_per_replica=5.0).validate()


def _fresh(value: float, age_seconds: float = 0.0) -> Reading:
    return Reading(value, NOW - age_seconds)


@pytest.mark.parametrize(
    ("reading", "current", "expected"),
    [
        pytest.param(_fresh(70.0), 4, 7, id="70 rps at 10 per replica needs 7"),
        pytest.param(_fresh(54.0), 6, 6, id="54 rps on 6 replicas is inside the 10 percent band"),
        pytest.param(_fresh(66.0), 6, 6, id="66 rps on 6 replicas is inside the 10 percent band"),
        pytest.param(_fresh(67.0), 6, 7, id="67 rps on 6 replicas is outside the band"),
        pytest.param(_fresh(53.0), 6, 6, id="53 rps on 6 replicas is outside the band and needs 6"),
        pytest.param(_fresh(40.0), 6, 4, id="40 rps on 6 replicas scales in to 4"),
        pytest.param(_fresh(0.0), 6, 0, id="zero load asks for zero"),
        pytest.param(_fresh(70.0), 0, 7, id="from zero replicas the band does not apply"),
        pytest.param(_fresh(70.0), None, 7, id="unknown current replicas skips the band"),
        pytest.param(_fresh(70.0, age_seconds=91.0), 4, None, id="a reading older than 90 s is stale"),
        pytest.param(_fresh(70.0, age_seconds=90.0), 4, 7, id="a reading exactly 90 s old is still usable"),
        pytest.param(_fresh(math.nan), 4, None, id="NaN load is unusable"),
        pytest.param(_fresh(math.inf), 4, None, id="infinite load is unusable"),
        pytest.param(_fresh(-1.0), 4, None, id="negative load is unusable"),
        pytest.param(None, 4, None, id="missing load asks nothing"),
    ],
)
def test_load_replicas(reading: Reading | None, current: int | None, expected: int | None) -> None:
    observations = Observations(at=NOW, current_replicas=current, ready_replicas=current, load=reading)
    assert load_replicas(NOW, observations, POLICY) == expected


@pytest.mark.parametrize(
    ("reading", "policy", "expected"),
    [
        pytest.param(_fresh(30.0), POLICY, 6, id="30 waiting at 5 per replica needs 6"),
        pytest.param(_fresh(21.0), POLICY, 4, id="21 waiting on 4 replicas is inside the band"),
        pytest.param(_fresh(30.0), BARE, None, id="unconfigured queue target asks nothing"),
        pytest.param(_fresh(math.nan), POLICY, None, id="NaN queue depth is unusable"),
        pytest.param(_fresh(30.0, age_seconds=300.0), POLICY, None, id="stale queue depth is unusable"),
    ],
)
def test_queue_replicas(reading: Reading, policy: ScalingPolicy, expected: int | None) -> None:
    observations = Observations(at=NOW, current_replicas=4, ready_replicas=4, queue_depth=reading)
    assert queue_replicas(NOW, observations, policy) == expected


@pytest.mark.parametrize(
    ("reading", "ready", "current", "policy", "expected"),
    [
        pytest.param(_fresh(0.4), 4, 4, POLICY, 8, id="p99 twice the target doubles the ready count"),
        pytest.param(_fresh(0.21), 4, 4, POLICY, 4, id="p99 within 10 percent of target holds"),
        pytest.param(_fresh(0.1), 4, 4, POLICY, 2, id="p99 half the target halves the ready count"),
        pytest.param(_fresh(0.4), 3, 6, POLICY, 6, id="latency scales the ready count, not spec replicas"),
        pytest.param(_fresh(0.4), None, 5, POLICY, 10, id="unknown ready falls back to current"),
        pytest.param(_fresh(0.4), 0, 4, POLICY, None, id="zero ready replicas describe nothing"),
        pytest.param(_fresh(0.4), 4, 4, BARE, None, id="unconfigured latency target asks nothing"),
        pytest.param(_fresh(math.inf), 4, 4, POLICY, None, id="infinite latency is unusable"),
        pytest.param(_fresh(-0.1), 4, 4, POLICY, None, id="negative latency is unusable"),
        pytest.param(_fresh(0.4, age_seconds=120.0), 4, 4, POLICY, None, id="stale latency is unusable"),
    ],
)
def test_latency_replicas(
    reading: Reading, ready: int | None, current: int, policy: ScalingPolicy, expected: int | None
) -> None:
    observations = Observations(at=NOW, current_replicas=current, ready_replicas=ready, p99_latency=reading)
    assert latency_replicas(NOW, observations, policy) == expected


@pytest.mark.parametrize(
    ("reading", "ready", "policy", "expected"),
    [
        pytest.param(_fresh(0.9), 4, POLICY, 6, id="GPU at 0.9 against 0.6 on 4 ready needs 6"),
        pytest.param(_fresh(0.63), 4, POLICY, 4, id="GPU within 10 percent of target holds"),
        pytest.param(_fresh(0.3), 4, POLICY, 2, id="GPU at half the target halves the count"),
        pytest.param(_fresh(0.9), 0, POLICY, None, id="GPU with zero ready replicas asks nothing"),
        pytest.param(_fresh(0.9), 4, BARE, None, id="unconfigured GPU target asks nothing"),
        pytest.param(_fresh(math.nan), 4, POLICY, None, id="NaN GPU utilization is unusable"),
    ],
)
def test_gpu_replicas(reading: Reading, ready: int, policy: ScalingPolicy, expected: int | None) -> None:
    observations = Observations(at=NOW, current_replicas=4, ready_replicas=ready, gpu_utilization=reading)
    assert gpu_replicas(NOW, observations, policy) == expected


def test_load_asks_nothing_while_the_capacity_is_unknown() -> None:
    observations = Observations(at=NOW, current_replicas=4, ready_replicas=4, load=_fresh(70.0))
    assert load_replicas(NOW, observations, UNKNOWN_CAPACITY) is None
    assert queue_replicas(NOW, replace(observations, queue_depth=_fresh(30.0)), UNKNOWN_CAPACITY) == 6


@pytest.mark.parametrize(
    ("reading", "ready", "policy", "expected"),
    [
        pytest.param(_fresh(1.0), 4, LLM, 5, id="KV cache full against 0.8 on 4 ready needs 5"),
        pytest.param(_fresh(0.85), 4, LLM, 4, id="KV cache within 10 percent of 0.8 holds"),
        pytest.param(_fresh(0.2), 8, LLM, 2, id="KV cache at a quarter of the target quarters the count"),
        pytest.param(_fresh(1.0), 4, BARE, 5, id="the 0.8 target is the default"),
        pytest.param(_fresh(1.0), 4, NO_KV, None, id="a KV target set to none asks nothing"),
        pytest.param(_fresh(1.0), 0, LLM, None, id="KV cache with zero ready replicas asks nothing"),
        pytest.param(_fresh(math.nan), 4, LLM, None, id="NaN KV cache usage is unusable"),
        pytest.param(_fresh(-0.5), 4, LLM, None, id="negative KV cache usage is unusable"),
        pytest.param(_fresh(1.0, age_seconds=91.0), 4, LLM, None, id="stale KV cache usage is unusable"),
        pytest.param(None, 4, LLM, None, id="missing KV cache usage asks nothing"),
    ],
)
def test_kv_cache_replicas(
    reading: Reading | None, ready: int, policy: ScalingPolicy, expected: int | None
) -> None:
    observations = Observations(
        at=NOW, current_replicas=4, ready_replicas=ready, kv_cache_utilization=reading
    )
    assert kv_cache_replicas(NOW, observations, policy) == expected


@pytest.mark.parametrize(
    ("reading", "ready", "policy", "expected"),
    [
        pytest.param(_fresh(4.0), 4, LLM, 8, id="TTFT twice the 2 s bound doubles the ready count"),
        pytest.param(_fresh(2.1), 4, LLM, 4, id="TTFT within 10 percent of the bound holds"),
        pytest.param(_fresh(0.5), 4, LLM, 1, id="TTFT a quarter of the bound quarters the count"),
        pytest.param(_fresh(4.0), 4, BARE, None, id="no TTFT bound asks nothing"),
        pytest.param(_fresh(4.0), 0, LLM, None, id="TTFT with zero ready replicas asks nothing"),
        pytest.param(_fresh(math.inf), 4, LLM, None, id="infinite TTFT is unusable"),
        pytest.param(_fresh(4.0, age_seconds=120.0), 4, LLM, None, id="stale TTFT is unusable"),
    ],
)
def test_ttft_replicas(reading: Reading, ready: int, policy: ScalingPolicy, expected: int | None) -> None:
    observations = Observations(at=NOW, current_replicas=4, ready_replicas=ready, ttft=reading)
    assert ttft_replicas(NOW, observations, policy) == expected


@pytest.mark.parametrize(
    ("overrides", "cold_start", "expected"),
    [
        pytest.param({}, None, None, id="no objective: nothing to choose by"),
        pytest.param(
            {"objective_unserved_share": 0.01, "forecast_quantile": 0.5, "forecast_floor_quantile": 0.9},
            None,
            None,
            id="both quantiles fixed by an expert: nothing is chosen to meet it",
        ),
        pytest.param(
            {"objective_unserved_share": 0.01, "target_utilization": 0.8},
            45.0,
            ScalingGoal(0.01, 1.25, 75.0, OBJECTIVE_QUANTILES),
            id="headroom 1 / target utilization, lead from the learned cold start",
        ),
        pytest.param(
            {"objective_unserved_share": 0.001, "target_utilization": 0.5, "forecast_headroom": 0.2},
            None,
            ScalingGoal(0.001, 2.4, 150.0, OBJECTIVE_QUANTILES),
            id="forecast headroom on top; the default cold start",
        ),
    ],
)
def test_scaling_goal(
    overrides: dict[str, float], cold_start: float | None, expected: ScalingGoal | None
) -> None:
    goal = scaling_goal(replace(POLICY, **overrides), cold_start)
    if expected is None:
        assert goal is None
    else:
        assert goal is not None
        assert (goal.unserved_share, goal.lead_seconds, goal.quantiles) == (
            expected.unserved_share,
            expected.lead_seconds,
            expected.quantiles,
        )
        assert goal.headroom == pytest.approx(expected.headroom)


@pytest.mark.parametrize(
    ("cold_start", "expected"),
    [
        pytest.param(None, 150.0, id="no learned cold start uses the 120 s default plus 30 s delay"),
        pytest.param(45.0, 75.0, id="a learned 45 s cold start plus 30 s delay"),
        pytest.param(0.0, 30.0, id="an instant start leaves only the delay"),
        pytest.param(-5.0, 150.0, id="a negative learned cold start falls back to the default"),
        pytest.param(math.nan, 150.0, id="a NaN learned cold start falls back to the default"),
    ],
)
def test_lead_seconds(cold_start: float | None, expected: float) -> None:
    observations = Observations(at=NOW, current_replicas=4, cold_start_seconds=cold_start)
    assert lead_seconds(observations, POLICY) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("trailing_error", "expected"),
    [
        pytest.param(None, 1.0, id="an unscored forecast is trusted"),
        pytest.param(0.0, 1.0, id="a perfect forecast is trusted"),
        pytest.param(0.25, 1.0, id="error at half the maximum is still fully trusted"),
        pytest.param(0.375, 0.5, id="error three quarters of the maximum is half trusted"),
        pytest.param(0.5, 0.0, id="error at the maximum is not trusted"),
        pytest.param(2.0, 0.0, id="error far over the maximum is not trusted"),
        pytest.param(math.nan, 0.0, id="a NaN error is not trusted"),
        pytest.param(math.inf, 0.0, id="an infinite error is not trusted"),
    ],
)
def test_forecast_trust(trailing_error: float | None, expected: float) -> None:
    assert forecast_trust(trailing_error, 0.5) == pytest.approx(expected)


def _forecast(
    values: list[float],
    start: float = NOW,
    error: float | None = None,
    high: float | None = None,
    maturity: float = 1.0,
) -> Forecast:
    path = np.array(values, dtype=float)
    quantiles = {0.5: path, 0.9: path * (high if high is not None else 1.0)}
    return Forecast(
        start=start, step_seconds=15.0, quantiles=quantiles, trailing_error=error, maturity=maturity
    )


# 11 steps of 15 s cover [NOW, NOW + 165 s): the 150 s lead window fits.
FLAT_40 = [40.0] * 11


@pytest.mark.parametrize(
    ("forecast", "policy", "load", "expected"),
    [
        pytest.param(None, POLICY, 20.0, None, id="no forecast gives no pre-warm"),
        pytest.param(
            _forecast(FLAT_40, start=NOW + 200.0),
            POLICY,
            20.0,
            None,
            id="a forecast starting after the window is unusable",
        ),
        pytest.param(
            _forecast(FLAT_40, start=NOW - 1_000.0),
            POLICY,
            20.0,
            None,
            id="a forecast ending before now is unusable",
        ),
        pytest.param(_forecast([math.nan] * 11), POLICY, 20.0, None, id="an all-NaN window is unusable"),
        pytest.param(_forecast([-5.0] * 11), POLICY, 20.0, None, id="a negative forecast is unusable"),
        pytest.param(_forecast(FLAT_40), POLICY, 20.0, (4, 40.0), id="a trusted 40 rps forecast asks for 4"),
        pytest.param(
            _forecast([40.0] * 10 + [math.nan]),
            POLICY,
            20.0,
            (4, 40.0),
            id="NaN steps are skipped, not fatal",
        ),
        pytest.param(
            _forecast([10.0] * 10 + [90.0]),
            POLICY,
            20.0,
            (9, 90.0),
            id="the peak over the whole window counts",
        ),
        pytest.param(
            _forecast([10.0] * 11 + [90.0]),
            POLICY,
            20.0,
            (1, 10.0),
            id="a peak past the lead window is not seen yet",
        ),
        pytest.param(
            _forecast(FLAT_40, error=0.375),
            POLICY,
            20.0,
            (3, 30.0),
            id="half trust moves half way from the load",
        ),
        pytest.param(
            _forecast(FLAT_40, error=0.375),
            POLICY,
            None,
            (2, 20.0),
            id="half trust without a load moves half way from 0",
        ),
        pytest.param(
            _forecast(FLAT_40, error=0.6), POLICY, 20.0, (2, 20.0), id="no trust provisions the load"
        ),
        pytest.param(
            _forecast(FLAT_40, maturity=0.5),
            POLICY,
            20.0,
            (3, 30.0),
            id="a forecast that has seen half its hour moves half way from the load",
        ),
        pytest.param(
            _forecast(FLAT_40, error=0.375, maturity=0.5),
            POLICY,
            20.0,
            (3, 25.0),
            id="half the hour seen and half trusted for its error: a quarter of the way",
        ),
        pytest.param(
            _forecast(FLAT_40, maturity=0.0),
            POLICY,
            20.0,
            (2, 20.0),
            id="a forecast of no history provisions the load",
        ),
        pytest.param(
            _forecast(FLAT_40),
            ScalingPolicy(
                replica_capacity_rps=10.0, target_utilization=1.0, forecast_headroom=0.25
            ).validate(),
            20.0,
            (5, 50.0),
            id="25 percent headroom inflates 40 rps to 50",
        ),
        pytest.param(
            _forecast(FLAT_40, high=2.0),
            POLICY,
            20.0,
            (4, 40.0),
            id="the median path is read by default",
        ),
        pytest.param(
            _forecast(FLAT_40, high=2.0),
            ScalingPolicy(
                replica_capacity_rps=10.0, target_utilization=1.0, forecast_quantile=0.9
            ).validate(),
            20.0,
            (8, 80.0),
            id="a p90 policy reads the p90 path",
        ),
        pytest.param(
            _forecast(FLAT_40, high=2.0),
            ScalingPolicy(
                replica_capacity_rps=10.0, target_utilization=1.0, forecast_quantile=0.95
            ).validate(),
            20.0,
            (8, 80.0),
            id="a quantile above every path reads the highest path",
        ),
    ],
)
def test_prewarm(
    forecast: Forecast | None, policy: ScalingPolicy, load: float | None, expected: tuple[int, float] | None
) -> None:
    observations = Observations(at=NOW, current_replicas=2, load=None if load is None else Reading(load, NOW))
    ahead = prewarm(NOW, observations, forecast, policy, operating_point(policy, ObjectiveState()))
    if expected is None:
        assert ahead is None
    else:
        assert ahead is not None
        assert (ahead.replicas, ahead.rps) == (expected[0], pytest.approx(expected[1]))
        assert ahead.lead_seconds == pytest.approx(150.0)

"""sidecar.telemetry: /metrics scraped over real HTTP and parsed with prometheus_client's parser."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import aiohttp
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from autoscaler import (
    CostBasis,
    Decision,
    DecisionState,
    Observations,
    Reading,
    Reason,
    ScalingPolicy,
    Signal,
    decide,
)
from autoscaler.capacity import CapacityEstimate
from autoscaler.objective import ObjectiveStatus
from autoscaler.observations import Histogram
from forecasting import Forecast
from metrics_adapter.external_metrics_api import ExternalMetricsSettings, build_external_metrics_app
from sidecar.latest_decisions import LatestDecisions, PublishedDecision
from sidecar.settings import QuerySettings
from sidecar.telemetry import build_metrics_app, build_telemetry
from tests.metrics_adapter.conftest import NOW, published, serve


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _with_forecast_and_signals() -> PublishedDecision:
    base = published("llama", replicas=7, forecast_rps=130.0)
    forecast = Forecast(
        start=base.decision.at,
        step_seconds=30.0,
        quantiles={0.5: np.array([100.0, 120.0, 500.0]), 0.9: np.array([110.0, 140.0, 900.0])},
        model="objective_choice:clock_quantiles",
    )
    observations = Observations(
        at=base.decision.at,
        current_replicas=6,
        load=Reading(95.0, observed_at=NOW - 12.0),
        queue_depth=None,
        cold_start_seconds=84.5,
    )
    decision = Decision(
        at=base.decision.at,
        replicas=7,
        reason=base.decision.reason,
        recommendations={"load": 5, "forecast": 7},
        forecast_rps=130.0,
        lead_seconds=45.0,
        forecast_trust=0.75,
        forecast_floor_replicas=6,
        objective=ObjectiveStatus(
            0.001,
            0.0004,
            forecast_quantile=0.3,
            floor_quantile=0.6,
            ttft_attainment=0.99,
            trailing_ttft_attainment=0.985,
            utilization=0.8,
        ),
    )
    return PublishedDecision(
        namespace=base.namespace,
        workload=base.workload,
        decision=decision,
        observations=observations,
        published_at=base.published_at,
        forecast=forecast,
        labels=base.labels,
    )


async def test_metrics_endpoint_reports_decisions_forecasts_ages_and_latency(
    fixed_clock: Callable[[], float],
) -> None:
    decisions = LatestDecisions()
    item = _with_forecast_and_signals()
    decisions.publish(item)
    telemetry = build_telemetry(decisions, fixed_clock)
    telemetry.record_decision(item)
    telemetry.record_decision(item)
    api = build_external_metrics_app(
        decisions,
        ExternalMetricsSettings(max_age_seconds=60.0, clock=fixed_clock, allow_unauthenticated=True),
        telemetry.request_seconds,
    )
    async with (
        serve(api, None) as api_url,
        serve(build_metrics_app(telemetry), None) as metrics_url,
        aiohttp.ClientSession() as session,
    ):
        async with session.get(f"{api_url}/apis/external.metrics.k8s.io/v1beta1/namespaces/ml/nope") as r:
            assert r.status == 404
        async with session.get(f"{metrics_url}/metrics") as response:
            assert response.status == 200
            text = await response.text()
    samples = _samples(text)
    workload = {("namespace", "ml"), ("workload", "llama")}
    assert samples[("autoscaler_desired_replicas", frozenset(workload))] == 7
    assert samples[("autoscaler_decision_reason", frozenset({*workload, ("reason", "forecast")}))] == 1
    assert samples[("autoscaler_decision_reason", frozenset({*workload, ("reason", "load")}))] == 0
    assert samples[("autoscaler_decision_age_seconds", frozenset(workload))] == pytest.approx(5.0)
    assert samples[("autoscaler_signal_age_seconds", frozenset({*workload, ("signal", "load")}))] == 12.0
    assert ("autoscaler_signal_age_seconds", frozenset({*workload, ("signal", "queue_depth")})) not in samples
    # Lead 45 s over 30 s steps covers steps 0 and 1: peaks 120 (median) and 140 (p90), not step 2.
    assert (
        samples[("autoscaler_forecast_requests_per_second", frozenset({*workload, ("quantile", "0.5")}))]
        == 120
    )
    assert (
        samples[("autoscaler_forecast_requests_per_second", frozenset({*workload, ("quantile", "0.9")}))]
        == 140
    )
    chosen = ("model", "objective_choice:clock_quantiles")
    assert samples[("autoscaler_forecast_model", frozenset({*workload, chosen}))] == 1
    assert samples[("autoscaler_decisions_total", frozenset({*workload, ("reason", "forecast")}))] == 2
    latency = {
        labels: value
        for (name, labels), value in samples.items()
        if name == "autoscaler_adapter_request_seconds_count"
    }
    assert sum(value for labels, value in latency.items() if ("code", "404") in labels) == 1


def _scrape(*items: PublishedDecision) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    decisions = LatestDecisions()
    for item in items:
        decisions.publish(item)
    return _samples(build_telemetry(decisions, lambda: NOW).render().decode())


def _names_for(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], workload: str) -> set[str]:
    return {name for name, labels in samples if ("workload", workload) in labels}


def test_decision_inputs_are_exported_per_workload_and_per_signal() -> None:
    samples = _scrape(_with_forecast_and_signals())
    workload = frozenset({("namespace", "ml"), ("workload", "llama")})
    assert samples[("autoscaler_cold_start_seconds", workload)] == 84.5
    assert samples[("autoscaler_observed_requests_per_second", workload)] == 95.0
    assert samples[("autoscaler_forecast_trust", workload)] == 0.75
    assert samples[("autoscaler_forecast_lead_seconds", workload)] == 45.0
    assert samples[("autoscaler_forecast_floor_replicas", workload)] == 6
    assert samples[("autoscaler_objective_unserved_share", workload)] == 0.001
    assert samples[("autoscaler_objective_trailing_unserved_share", workload)] == 0.0004
    assert samples[("autoscaler_objective_unreachable", workload)] == 0.0
    assert samples[("autoscaler_objective_ttft_attainment", workload)] == 0.99
    assert samples[("autoscaler_objective_utilization", workload)] == 0.8
    assert samples[("autoscaler_objective_trailing_ttft_attainment", workload)] == 0.985
    chosen = {
        dict(labels)["use"]: value
        for (name, labels), value in samples.items()
        if name == "autoscaler_objective_quantile"
    }
    assert chosen == {"forecast": 0.3, "floor": 0.6}
    recommended = {
        dict(labels)["signal"]: value
        for (name, labels), value in samples.items()
        if name == "autoscaler_recommended_replicas"
    }
    # Only the signals decide() heard from: the forecast (7) won, load (5) is the runner-up.
    assert recommended == {"load": 5, "forecast": 7}


def _bare(
    workload: str, *, load: Reading | None, cold_start_seconds: float | None, forecast_rps: float | None
) -> PublishedDecision:
    # decide() leaves trust and lead at their 0.0 defaults when it had no forecast.
    decision = Decision(at=NOW - 5, replicas=4, reason=Reason.HELD_STALE, forecast_rps=forecast_rps)
    return PublishedDecision(
        namespace="ml",
        workload=workload,
        decision=decision,
        observations=Observations(
            at=NOW - 5, current_replicas=4, load=load, cold_start_seconds=cold_start_seconds
        ),
        published_at=NOW - 5,
    )


@pytest.mark.parametrize(
    ("item", "absent", "present"),
    [
        pytest.param(
            _bare("cold", load=None, cold_start_seconds=None, forecast_rps=None),
            {
                "autoscaler_cold_start_seconds",
                "autoscaler_observed_requests_per_second",
                "autoscaler_recommended_replicas",
                "autoscaler_forecast_trust",
                "autoscaler_forecast_lead_seconds",
                "autoscaler_forecast_floor_replicas",
                "autoscaler_forecast_model",
                "autoscaler_objective_unserved_share",
                "autoscaler_objective_trailing_unserved_share",
                "autoscaler_objective_quantile",
                "autoscaler_objective_unreachable",
                "autoscaler_objective_ttft_attainment",
                "autoscaler_objective_trailing_ttft_attainment",
                "autoscaler_objective_utilization",
            },
            {"autoscaler_desired_replicas"},
            id="nothing known is exported as absent, never as 0",
        ),
        pytest.param(
            _bare(
                "nan", load=Reading(float("nan"), NOW - 5), cold_start_seconds=float("nan"), forecast_rps=None
            ),
            {"autoscaler_cold_start_seconds", "autoscaler_observed_requests_per_second"},
            {"autoscaler_desired_replicas", "autoscaler_signal_age_seconds"},
            id="a NaN reading or estimate is absent",
        ),
        pytest.param(
            _bare("zero", load=Reading(0.0, NOW - 5), cold_start_seconds=None, forecast_rps=None),
            {"autoscaler_forecast_trust", "autoscaler_forecast_lead_seconds"},
            {"autoscaler_observed_requests_per_second"},
            id="a measured zero load is exported but placeholder trust and lead are not",
        ),
        pytest.param(
            _bare("zero-trust", load=None, cold_start_seconds=30.0, forecast_rps=12.0),
            {"autoscaler_observed_requests_per_second"},
            {
                "autoscaler_forecast_trust",
                "autoscaler_forecast_lead_seconds",
                "autoscaler_cold_start_seconds",
            },
            id="a used forecast exports its trust and lead even at 0",
        ),
    ],
)
def test_missing_values_are_absent_not_zero(
    item: PublishedDecision, absent: set[str], present: set[str]
) -> None:
    # A second, complete workload shows the absences are per workload, not whole families.
    samples = _scrape(item, _with_forecast_and_signals())
    names = _names_for(samples, item.workload)
    assert not names & absent
    assert present <= names
    assert absent <= _names_for(samples, "llama")


def test_an_unreachable_objective_is_flagged() -> None:
    item = _with_forecast_and_signals()
    status = ObjectiveStatus(0.001, 0.02, 0.9, 0.99, unreachable="at max_replicas=7")
    item = replace(item, decision=replace(item.decision, objective=status))
    workload = frozenset({("namespace", "ml"), ("workload", "llama")})
    assert _scrape(item)[("autoscaler_objective_unreachable", workload)] == 1.0


def test_a_measured_zero_load_reads_zero() -> None:
    samples = _scrape(_bare("zero", load=Reading(0.0, NOW - 5), cold_start_seconds=None, forecast_rps=None))
    assert (
        samples[
            (
                "autoscaler_observed_requests_per_second",
                frozenset({("namespace", "ml"), ("workload", "zero")}),
            )
        ]
        == 0.0
    )


def test_quantiles_that_print_alike_stay_two_series(fixed_clock: Callable[[], float]) -> None:
    item = _with_forecast_and_signals()
    path = np.array([100.0, 120.0, 500.0])
    forecast = Forecast(start=item.decision.at, step_seconds=30.0, quantiles={0.9: path, 0.9000001: path + 1})
    decisions = LatestDecisions()
    decisions.publish(replace(item, forecast=forecast))
    families = text_string_to_metric_families(build_telemetry(decisions, fixed_clock).render().decode())
    labels = [
        sample.labels["quantile"]
        for family in families
        for sample in family.samples
        if sample.name == "autoscaler_forecast_requests_per_second"
    ]
    assert sorted(labels) == ["0.9", "0.9000001"]


def test_cost_is_exported_per_workload(fixed_clock: Callable[[], float]) -> None:
    # 6 replicas x 2 GPUs at 95 rps of 6 x 20 rps capacity, at 4.0 a GPU-hour.
    item = replace(
        _with_forecast_and_signals(),
        cost_basis=CostBasis(gpus_per_replica=2.0, replica_capacity_rps=20.0, price_per_gpu_hour=4.0),
    )
    latest = LatestDecisions()
    latest.publish(item)
    samples = _samples(build_telemetry(latest, fixed_clock).render().decode())
    labels = frozenset({("namespace", item.namespace), ("workload", item.workload)})
    assert samples[("autoscaler_provisioned_gpus", labels)] == 12.0
    assert samples[("autoscaler_idle_capacity_ratio", labels)] == pytest.approx(1 - 95.0 / 120.0)
    assert samples[("autoscaler_cost_per_1k_requests", labels)] == pytest.approx(12 * 4.0 / 3600 / 95 * 1000)
    # Without a price there is no money figure, but GPUs and idle share still show.
    latest.publish(replace(item, cost_basis=CostBasis(2.0, 20.0)))
    unpriced = _samples(build_telemetry(latest, fixed_clock).render().decode())
    assert ("autoscaler_cost_per_1k_requests", labels) not in unpriced
    assert unpriced[("autoscaler_provisioned_gpus", labels)] == 12.0


def test_every_signal_has_one_name_from_settings_to_the_metrics_labels() -> None:
    # Real decide() on a reading of every signal, each asking for a different count.
    policy = ScalingPolicy(
        replica_capacity_rps=10.0,
        p99_latency_target_seconds=0.5,
        queue_depth_target_per_replica=4.0,
        gpu_utilization_target=0.5,
        ttft_target_seconds=2.0,
    )
    fresh = NOW - 1.0
    observations = Observations(
        at=NOW,
        current_replicas=4,
        load=Reading(35.0, fresh),
        p99_latency=Reading(0.75, fresh),
        queue_depth=Reading(28.0, fresh),
        gpu_utilization=Reading(0.25, fresh),
        kv_cache_utilization=Reading(0.9, fresh),
        ttft=Reading(3.0, fresh),
        ttft_histogram=Histogram((2.0, math.inf), (9.0, 10.0), fresh),
    )
    decision, _ = decide(NOW, observations, None, policy, DecisionState())
    base = published("llama", replicas=decision.replicas)
    samples = _scrape(replace(base, decision=decision, observations=observations))
    labels = {
        name: {dict(labels)["signal"] for (sample, labels) in samples if sample == name}
        for name in ("autoscaler_signal_age_seconds", "autoscaler_recommended_replicas")
    }
    named = {signal.value for signal in Signal}
    # The TTFT histogram asks for no replicas itself: it is what the objective's misses are read from.
    asking = named - {Signal.TTFT_HISTOGRAM.value}
    assert labels == {"autoscaler_signal_age_seconds": named, "autoscaler_recommended_replicas": asking}
    assert named == set(QuerySettings.model_fields), "each signal is a `queries` setting"


def test_a_learned_capacity_is_exported_with_its_evidence_and_absent_before() -> None:
    learned = replace(published("llama"), learned_capacity=CapacityEstimate(6.25, 120, 40))
    samples = _scrape(learned, published("mistral"))
    llama = frozenset({("namespace", "ml"), ("workload", "llama")})
    assert samples[("autoscaler_learned_capacity_per_replica", llama)] == 6.25
    assert samples[("autoscaler_learned_capacity_pairs", llama | {("side", "healthy")})] == 120
    assert samples[("autoscaler_learned_capacity_pairs", llama | {("side", "saturated")})] == 40
    assert "autoscaler_learned_capacity_per_replica" not in _names_for(samples, "mistral")

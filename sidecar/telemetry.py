"""The sidecar's own /metrics: what it decided and why, read from LatestDecisions at scrape time.

Everything lives in an explicit CollectorRegistry (never the global one), so tests and a second
sidecar in one process do not collide. Per-workload gauges are computed on each scrape from the
published records; counters that need every decision (not just the newest) are fed by
`record_decision`, which the composition root calls right after publishing.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import aiohttp
from aiohttp import web
from kubernetes_asyncio.client.exceptions import ApiException
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from autoscaler import Reason, Signal, cost_now
from sidecar.latest_decisions import PublishedDecision

# Request latencies of the adapter servers are sub-millisecond to a few ms on loopback; the
# upper buckets catch TokenReview/SubjectAccessReview round trips on a cache miss.
_LATENCY_BUCKETS_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class DecisionReader(Protocol):
    def all(self) -> list[PublishedDecision]: ...


class DecisionCollector(Collector):
    """Scrape-time gauges over the newest decision of every workload."""

    def __init__(self, source: DecisionReader, clock: Callable[[], float]) -> None:
        self._source = source
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        now = self._clock()
        labels = ["namespace", "workload"]
        desired = GaugeMetricFamily(
            "autoscaler_desired_replicas", "Replica count the newest decision publishes.", labels=labels
        )
        reason = GaugeMetricFamily(
            "autoscaler_decision_reason",
            "1 for the reason that bound the newest decision, 0 for the others.",
            labels=[*labels, "reason"],
        )
        decision_age = GaugeMetricFamily(
            "autoscaler_decision_age_seconds",
            "Seconds since the newest decision was published.",
            labels=labels,
        )
        forecast = GaugeMetricFamily(
            "autoscaler_forecast_requests_per_second",
            "Forecast peak request rate over the decision's lead time, per forecast quantile.",
            labels=[*labels, "quantile"],
        )
        forecast_model = GaugeMetricFamily(
            "autoscaler_forecast_model",
            "1, labelled with the model that forecast for the newest decision; a model that chooses"
            " per workload names its choice (objective_choice:clock_quantiles). Absent without a"
            " forecast.",
            labels=[*labels, "model"],
        )
        signal_age = GaugeMetricFamily(
            "autoscaler_signal_age_seconds",
            "Age of each input signal the newest decision was made from (absent when missing).",
            labels=[*labels, "signal"],
        )
        cold_start = GaugeMetricFamily(
            "autoscaler_cold_start_seconds",
            "Learned create-to-Ready time of a new replica (absent until one is learned).",
            labels=labels,
        )
        observed = GaugeMetricFamily(
            "autoscaler_observed_requests_per_second",
            "The load reading the newest decision was made from (absent when load was missing).",
            labels=labels,
        )
        recommended = GaugeMetricFamily(
            "autoscaler_recommended_replicas",
            "Replicas each live signal asked for before the behavior rules; only live signals appear.",
            labels=[*labels, "signal"],
        )
        trust = GaugeMetricFamily(
            "autoscaler_forecast_trust",
            "Weight 0..1 the newest decision gave its forecast (absent when no forecast was used).",
            labels=labels,
        )
        lead = GaugeMetricFamily(
            "autoscaler_forecast_lead_seconds",
            "How far ahead the newest decision looked into its forecast (absent when none was used).",
            labels=labels,
        )
        floor = GaugeMetricFamily(
            "autoscaler_forecast_floor_replicas",
            "Replicas the forecast's floor quantile holds: no scale-down below the smaller of this and"
            " the current count (absent when no forecast floor was usable).",
            labels=labels,
        )
        # The declared objective (autoscaler.objective) and what the loop measures against it.
        objective = GaugeMetricFamily(
            "autoscaler_objective_unserved_share",
            "Share of demand the workload may leave unserved, as declared (absent without one).",
            labels=labels,
        )
        attained = GaugeMetricFamily(
            "autoscaler_objective_trailing_unserved_share",
            "Share of demand the ready replicas left unserved over the trailing day, as the loop"
            " measures it from the load reading (absent before any demand).",
            labels=labels,
        )
        chosen = GaugeMetricFamily(
            "autoscaler_objective_quantile",
            "Forecast quantile the newest decision read to meet the objective: use=forecast (pre-warm)"
            " or floor (scale-down guard).",
            labels=[*labels, "use"],
        )
        utilization = GaugeMetricFamily(
            "autoscaler_objective_utilization",
            "Utilization of each replica's capacity the newest decision sized the load and forecast"
            " asks at: target_utilization, raised while even the lowest forecast quantile misses"
            " less than the objective.",
            labels=labels,
        )
        ttft_objective = GaugeMetricFamily(
            "autoscaler_objective_ttft_attainment",
            "Share of requests that must get their first token within ttft_target_seconds, as"
            " declared (absent without a latency objective).",
            labels=labels,
        )
        ttft_attained = GaugeMetricFamily(
            "autoscaler_objective_trailing_ttft_attainment",
            "Share of requests that got their first token within ttft_target_seconds over the"
            " trailing day, as the loop reads it from the TTFT histogram (absent before any).",
            labels=labels,
        )
        unreachable = GaugeMetricFamily(
            "autoscaler_objective_unreachable",
            "1 while the replicas are at max_replicas and the trailing unserved share or TTFT"
            " attainment is worse than the objective (the log says why), else 0.",
            labels=labels,
        )
        # Cost (autoscaler.cost): GPUs provisioned, idle capacity share, price per 1,000 requests.
        gpus = GaugeMetricFamily(
            "autoscaler_provisioned_gpus",
            "GPUs the current replicas hold (replicas x gpus_per_replica); avg_over_time(...[1h]) is"
            " GPU-hours per hour.",
            labels=labels,
        )
        idle = GaugeMetricFamily(
            "autoscaler_idle_capacity_ratio",
            "Share 0..1 of the current replicas' capacity (replica_capacity_rps each) the load leaves"
            " unused (absent when load or replicas are unknown).",
            labels=labels,
        )
        per_1k = GaugeMetricFamily(
            "autoscaler_cost_per_1k_requests",
            "Cost of 1,000 requests at the current load, replicas and price_per_gpu_hour (absent"
            " without a price or load).",
            labels=labels,
        )
        learned = GaugeMetricFamily(
            "autoscaler_learned_capacity_per_replica",
            "Load one ready replica sustains before its queue grows or TTFT crosses the bound, learned"
            " online (the load's unit; absent until enough pairs); decisions use it only when the"
            " settings give no replica_capacity_rps.",
            labels=labels,
        )
        evidence = GaugeMetricFamily(
            "autoscaler_learned_capacity_pairs",
            "Pairs (load per ready replica, saturated or not) the learned capacity rests on, by side.",
            labels=[*labels, "side"],
        )
        for item in self._source.all():
            workload = [item.namespace, item.workload]
            if item.learned_capacity is not None:
                learned.add_metric(workload, item.learned_capacity.per_replica)
                evidence.add_metric([*workload, "healthy"], item.learned_capacity.healthy_pairs)
                evidence.add_metric([*workload, "saturated"], item.learned_capacity.saturated_pairs)
            load_reading = item.observations.load
            cost = (
                cost_now(
                    item.observations.current_replicas,
                    None if load_reading is None else load_reading.value,
                    item.cost_basis,
                )
                if item.cost_basis is not None
                else None
            )
            if cost is not None:
                gpus.add_metric(workload, cost.provisioned_gpus)
                _add_if_finite(idle, workload, cost.idle_share)
                _add_if_finite(per_1k, workload, cost.per_1k_requests)
            decision = item.decision
            desired.add_metric(workload, decision.replicas)
            for candidate in Reason:
                reason.add_metric([*workload, candidate.value], 1.0 if candidate is decision.reason else 0.0)
            decision_age.add_metric(workload, max(0.0, now - item.published_at))
            for signal in Signal:
                reading = getattr(item.observations, signal)
                if reading is not None:
                    signal_age.add_metric([*workload, signal], reading.age_seconds(now))
            if item.forecast is not None:
                forecast_model.add_metric([*workload, item.forecast.model], 1.0)
                # Peak over [decision time, decision time + lead]; a lead of 0 still reads one step.
                until = decision.at + decision.lead_seconds
                for quantile in sorted(item.forecast.quantiles):
                    peak = item.forecast.peak(decision.at, until, quantile)
                    if peak is not None and math.isfinite(peak):
                        # repr, not :g: 0.9 and 0.9000001 must stay two label values.
                        forecast.add_metric([*workload, repr(float(quantile))], peak)
            # Missing stays absent, never 0: a 0 would read as "instant cold start" or "no load".
            _add_if_finite(cold_start, workload, item.observations.cold_start_seconds)
            load = item.observations.load
            _add_if_finite(observed, workload, None if load is None else load.value)
            for signal, replicas in sorted(decision.recommendations.items()):
                recommended.add_metric([*workload, signal], replicas)
            # forecast_rps is None exactly when decide() had no usable forecast; trust and lead
            # are then placeholders (0.0) that must not be mistaken for "forecast ignored".
            if decision.forecast_rps is not None:
                _add_if_finite(trust, workload, decision.forecast_trust)
                _add_if_finite(lead, workload, decision.lead_seconds)
            if decision.forecast_floor_replicas is not None:
                floor.add_metric(workload, decision.forecast_floor_replicas)
            if decision.objective is not None:
                status = decision.objective
                objective.add_metric(workload, status.unserved_share)
                _add_if_finite(attained, workload, status.trailing_unserved_share)
                chosen.add_metric([*workload, "forecast"], status.forecast_quantile)
                chosen.add_metric([*workload, "floor"], status.floor_quantile)
                _add_if_finite(utilization, workload, status.utilization)
                unreachable.add_metric(workload, 1.0 if status.unreachable else 0.0)
                _add_if_finite(ttft_objective, workload, status.ttft_attainment)
                _add_if_finite(ttft_attained, workload, status.trailing_ttft_attainment)
        yield from (
            desired,
            reason,
            decision_age,
            forecast,
            forecast_model,
            signal_age,
            cold_start,
            observed,
            recommended,
            trust,
            lead,
            floor,
            objective,
            attained,
            chosen,
            utilization,
            ttft_objective,
            ttft_attained,
            unreachable,
            gpus,
            idle,
            per_1k,
            learned,
            evidence,
        )


def _add_if_finite(family: GaugeMetricFamily, labels: list[str], value: float | None) -> None:
    if value is not None and math.isfinite(value):
        family.add_metric(labels, value)


@dataclass(frozen=True, slots=True)
class Telemetry:
    """The registry to serve plus the instruments other modules feed.

    `request_seconds` (labels route, code) is handed to the adapter servers;
    `decisions_total` (labels namespace, workload, reason) counts published decisions.
    """

    registry: CollectorRegistry
    request_seconds: Histogram
    decisions_total: Counter

    def record_decision(self, item: PublishedDecision) -> None:
        self.decisions_total.labels(item.namespace, item.workload, item.decision.reason.value).inc()

    def render(self) -> bytes:
        """The text exposition format, for a /metrics handler."""
        return generate_latest(self.registry)


def build_telemetry(source: DecisionReader, clock: Callable[[], float]) -> Telemetry:
    registry = CollectorRegistry()
    registry.register(DecisionCollector(source, clock))
    request_seconds = Histogram(
        "autoscaler_adapter_request_seconds",
        "Latency of requests served by the external metrics, metrics-api and KEDA servers.",
        ["route", "code"],
        buckets=_LATENCY_BUCKETS_SECONDS,
        registry=registry,
    )
    decisions_total = Counter(
        "autoscaler_decisions",
        "Decisions published, by the reason that bound them.",
        ["namespace", "workload", "reason"],
        registry=registry,
    )
    return Telemetry(registry, request_seconds, decisions_total)


def build_metrics_app(telemetry: Telemetry) -> web.Application:
    """A plain-HTTP application serving GET /metrics for Prometheus to scrape."""

    async def metrics(request: web.Request) -> web.Response:
        response = web.Response(body=telemetry.render())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app


# --- Outbound calls: Prometheus queries and Kubernetes API calls ------------------------------------

# Queries and API calls take milliseconds when healthy; the top buckets reach the timeouts.
_CALL_BUCKETS_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True, slots=True)
class CallMetrics:
    """Errors and latency of what the sidecar asks others, so an outage shows on /metrics.

    `prometheus_errors` (namespace, workload, signal, reason: QueryError reasons such as
    connection, timeout, http, empty); `prometheus_seconds` (kind: instant or range);
    `kubernetes_errors` (call, reason: timeout, connection or the HTTP status); `kubernetes_seconds`
    (call), both fed by `kubernetes_call`. Calls: read_deployment, read_statefulset, watch_pods,
    read_lease, create_lease, replace_lease, read_horizontalpodautoscaler,
    patch_horizontalpodautoscaler, read_scaledobject, patch_scaledobject, create_tokenreview,
    create_subjectaccessreview. Label sets are bounded by the configured workloads and these
    fixed call names.
    """

    prometheus_errors: Counter
    prometheus_seconds: Histogram
    kubernetes_errors: Counter
    kubernetes_seconds: Histogram


def build_call_metrics(registry: CollectorRegistry) -> CallMetrics:
    return CallMetrics(
        prometheus_errors=Counter(
            "autoscaler_prometheus_query_errors",
            "Prometheus queries that gave no usable value, by workload, signal and reason.",
            ["namespace", "workload", "signal", "reason"],
            registry=registry,
        ),
        prometheus_seconds=Histogram(
            "autoscaler_prometheus_query_duration_seconds",
            "Time to answer a Prometheus query (failures included), instant or range.",
            ["kind"],
            buckets=_CALL_BUCKETS_SECONDS,
            registry=registry,
        ),
        kubernetes_errors=Counter(
            "autoscaler_kubernetes_request_errors",
            "Kubernetes API calls that failed, by call and reason.",
            ["call", "reason"],
            registry=registry,
        ),
        kubernetes_seconds=Histogram(
            "autoscaler_kubernetes_request_duration_seconds",
            "Time to answer a Kubernetes API call (failures included).",
            ["call"],
            buckets=_CALL_BUCKETS_SECONDS,
            registry=registry,
        ),
    )


# An API server that restarts or a load balancer that resets the connection surfaces as
# aiohttp's ServerDisconnectedError, which is no OSError: every call treats it like a timeout.
KUBERNETES_CALL_FAILURES = (ApiException, TimeoutError, OSError, aiohttp.ClientError)


def kubernetes_failure_reason(error: BaseException) -> str:
    """The errors counter's label: the HTTP status, or how the connection failed."""
    if isinstance(error, ApiException):
        return str(error.status)
    return "timeout" if isinstance(error, TimeoutError) else "connection"


@contextlib.contextmanager
def kubernetes_call(metrics: CallMetrics | None, call: str, *, timed: bool = True) -> Iterator[None]:
    """Count one Kubernetes API call: every one the sidecar makes (replica reads, the Lease, pod
    watches, pre-warm reads and patches, TokenReview and SubjectAccessReview) runs inside this,
    so `call` names it on both instruments. A failure (KUBERNETES_CALL_FAILURES) is counted by
    reason and re-raised; what the caller makes of it (a 404 Lease means "create it") is its own.
    `timed=False` for a watch: it lasts as long as the server keeps it open, so its duration
    says nothing about the API server's health."""
    started = time.perf_counter()
    try:
        yield
    except KUBERNETES_CALL_FAILURES as error:
        if metrics is not None:
            metrics.kubernetes_errors.labels(call, kubernetes_failure_reason(error)).inc()
        raise
    finally:
        if metrics is not None and timed:
            metrics.kubernetes_seconds.labels(call).observe(time.perf_counter() - started)

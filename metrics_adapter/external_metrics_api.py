"""The aiohttp application serving external.metrics.k8s.io/v1beta1 and KEDA's metrics-api JSON.

Every answer is read from the latest published decisions; nothing here queries Prometheus or runs
the model. A known metric for a fresh decision yields exactly one item (the HPA sums items, so two
workloads in one answer would double a replica count); every other case is a metav1.Status error:
400 bad selector or a selector matching several workloads, 404 unknown metric or no matching
workload, 503 no fresh decision yet. Errors never carry Retry-After, because client-go would then
block an HPA worker retrying.
"""

from __future__ import annotations

import json
import logging
import math
import re
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from prometheus_client import Histogram

from metrics_adapter.authentication import (
    EXTERNAL_METRICS_GROUP,
    EXTERNAL_METRICS_VERSION,
    AccessReviewer,
    AuthenticationError,
    FrontProxyVerifier,
    ReviewUnavailableError,
    User,
    is_master,
    user_from_headers,
)
from metrics_adapter.published_metrics import (
    PUBLISHED_METRICS,
    DecisionSource,
    is_fresh,
    selectable_labels,
)
from metrics_adapter.quantity import format_quantity
from metrics_adapter.selectors import SelectorError, parse_selector
from sidecar.latest_decisions import PublishedDecision

log = logging.getLogger(__name__)

GROUP_VERSION = f"{EXTERNAL_METRICS_GROUP}/{EXTERNAL_METRICS_VERSION}"
API_PREFIX = f"/apis/{GROUP_VERSION}"
# RFC 6750 b64token: what a service-account JWT or any other bearer token is made of.
_BEARER_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
# KEDA `metrics-api` trigger, on the same HTTPS port:
#   url: https://<service>.<namespace>.svc:<port>/keda/v1/namespaces/<ns>/workloads/<workload>
#   format: json, targetValue: "1", valueLocation: desired_replicas
#   (or valueLocation: forecast_requests_per_second with targetValue = replica_capacity_rps x
#   target_utilization, the rps one replica should carry; see published_metrics)
#   authModes: bearer (TokenReview + SubjectAccessReview for `list` on desired_replicas in <ns>).
# Body: {"namespace", "workload", "timestamp", "reason", "desired_replicas",
#        "forecast_requests_per_second" (absent until a finite forecast exists, never 0 or NaN)}.
METRICS_API_PATH = "/keda/v1/namespaces/{namespace}/workloads/{workload}"
_ALWAYS_ALLOWED_PATHS = frozenset({"/healthz", "/livez", "/readyz"})
_HTTP_REASONS = {
    400: "BadRequest",
    405: "MethodNotAllowed",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    503: "ServiceUnavailable",
}


@dataclass(frozen=True, slots=True)
class ExternalMetricsSettings:
    """What the HTTP servers need besides the decision source.

    `max_age_seconds`: a decision published longer ago than this is stale and answered with 503.
    `allow_unauthenticated`: local use only (kubectl port-forward, benches); off by default.
    """

    max_age_seconds: float
    clock: Callable[[], float] = time.time
    front_proxy: FrontProxyVerifier | None = None
    reviewer: AccessReviewer | None = None
    allow_unauthenticated: bool = False


class StatusError(Exception):
    """An error answered as a metav1.Status object with HTTP status `code`."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def status_response(code: int, message: str) -> web.Response:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": _HTTP_REASONS.get(code, "InternalError"),
        "code": code,
    }
    return web.json_response(body, status=code)


def format_timestamp(unix_seconds: float) -> str:
    """metav1.Time: RFC3339, whole seconds, UTC with a Z."""
    return datetime.fromtimestamp(int(unix_seconds), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_server_ssl_context(cert_file: str, key_file: str, client_ca_file: str | None) -> ssl.SSLContext:
    """Serving TLS; when `client_ca_file` is given, client certificates signed by it are requested
    (optional, so bearer-token callers without one still connect)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    if client_ca_file is not None:
        context.load_verify_locations(cafile=client_ca_file)
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


def _discovery_group() -> dict[str, Any]:
    version = {"groupVersion": GROUP_VERSION, "version": EXTERNAL_METRICS_VERSION}
    return {
        "name": EXTERNAL_METRICS_GROUP,
        "versions": [version],
        "preferredVersion": version,
    }


def _resource_list() -> dict[str, Any]:
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": GROUP_VERSION,
        "resources": [
            {
                "name": name,
                "singularName": "",
                "namespaced": True,
                "kind": "ExternalMetricValueList",
                "verbs": ["get"],
            }
            for name in PUBLISHED_METRICS
        ],
    }


def _peer_certificate(request: web.Request) -> bytes | None:
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    return None if ssl_object is None else ssl_object.getpeercert(binary_form=True)


class _Handlers:
    def __init__(self, source: DecisionSource, settings: ExternalMetricsSettings) -> None:
        self._source = source
        self._settings = settings
        self._discovery_body = {
            "/apis": json.dumps({"kind": "APIGroupList", "apiVersion": "v1", "groups": [_discovery_group()]}),
            f"/apis/{EXTERNAL_METRICS_GROUP}": json.dumps(
                {"kind": "APIGroup", "apiVersion": "v1", **_discovery_group()}
            ),
            API_PREFIX: json.dumps(_resource_list()),
        }

    async def authenticate(self, request: web.Request) -> User | None:
        front_proxy = self._settings.front_proxy
        if front_proxy is not None and front_proxy.trusts(_peer_certificate(request)):
            user = user_from_headers(request.headers)
            if user is not None:
                return user
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        # The scheme is case-insensitive (RFC 9110), as kube-apiserver reads it.
        if scheme.lower() == "bearer" and self._settings.reviewer is not None:
            token = credentials.strip()
            if not _BEARER_TOKEN.fullmatch(token):
                # Never sent on: the API server answers an empty token with a 400, and a
                # refused review is cached only when it comes back as a rejection.
                raise AuthenticationError("the Authorization header holds no well-formed bearer token")
            try:
                user = await self._settings.reviewer.review_token(token)
            except ReviewUnavailableError as error:
                log.warning("cannot verify a bearer token; refusing the request", extra={"error": str(error)})
                raise AuthenticationError(f"the bearer token could not be verified ({error})") from error
            if user is None:
                raise AuthenticationError("the bearer token was rejected by TokenReview")
            return user
        return None

    async def require_user(self, request: web.Request) -> User | None:
        """The authenticated caller (None only when auth is switched off for local use)."""
        if self._settings.allow_unauthenticated:
            return None
        try:
            user = await self.authenticate(request)
        except AuthenticationError as error:
            raise StatusError(401, str(error)) from error
        if user is None:
            raise StatusError(401, "no trusted front-proxy certificate or bearer token")
        return user

    async def authorize(self, request: web.Request, namespace: str, resource: str) -> None:
        user = await self.require_user(request)
        if user is None or is_master(user):
            return
        reviewer = self._settings.reviewer
        try:
            allowed = reviewer is not None and await reviewer.may_list(user, namespace, resource)
        except ReviewUnavailableError as error:
            log.warning("cannot check access; refusing the request", extra={"error": str(error)})
            allowed = False
        if not allowed:
            raise StatusError(
                403,
                f'user "{user.name}" cannot list resource "{resource}" in API group '
                f'"{EXTERNAL_METRICS_GROUP}" in the namespace "{namespace}"',
            )

    async def discovery(self, request: web.Request) -> web.Response:
        # Discovery is open to every authenticated caller (RBAC's system:discovery grants the same).
        await self.require_user(request)
        return web.Response(
            text=self._discovery_body[request.path.rstrip("/")], content_type="application/json"
        )

    async def openapi(self, request: web.Request) -> web.Response:
        # The aggregator treats 404 as "this service has no spec", which is allowed and simplest.
        return status_response(404, f"the server could not find the requested resource {request.path}")

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def external_metric(self, request: web.Request) -> web.Response:
        namespace = request.match_info["namespace"]
        metric_name = request.match_info["metric"]
        await self.authorize(request, namespace, metric_name)
        item, quantity = self._select(namespace, metric_name, request.query.get("labelSelector", ""))
        body = {
            "kind": "ExternalMetricValueList",
            "apiVersion": GROUP_VERSION,
            "metadata": {},
            "items": [
                {
                    "metricName": metric_name,
                    "metricLabels": selectable_labels(item),
                    "timestamp": format_timestamp(item.decision.at),
                    "value": quantity,
                }
            ],
        }
        return web.json_response(body)

    async def keda_metrics_api(self, request: web.Request) -> web.Response:
        """KEDA `metrics-api` trigger (format json): see METRICS_API_PATH for URL and valueLocation."""
        namespace = request.match_info["namespace"]
        workload = request.match_info["workload"]
        await self.authorize(request, namespace, "desired_replicas")
        item = self._fresh(namespace, self._source.get(namespace, workload), f"workload {workload!r}")
        body: dict[str, Any] = {
            "namespace": namespace,
            "workload": workload,
            "timestamp": format_timestamp(item.decision.at),
            "reason": item.decision.reason.value,
            "desired_replicas": item.decision.replicas,
        }
        forecast = item.decision.forecast_rps
        # json.dumps would write a NaN forecast as the bare token NaN, which is not JSON and would
        # fail KEDA's parser for the whole body; a missing key fails only that valueLocation.
        if forecast is not None and math.isfinite(forecast):
            body["forecast_requests_per_second"] = forecast
        return web.json_response(body)

    def _fresh(self, namespace: str, item: PublishedDecision | None, what: str) -> PublishedDecision:
        if item is None:
            raise StatusError(404, f"no decision for {what} in namespace {namespace!r}")
        if not is_fresh(item, self._settings.clock(), self._settings.max_age_seconds):
            raise StatusError(
                503, f"the newest decision for {item.namespace}/{item.workload} is stale; not serving it"
            )
        return item

    def _select(self, namespace: str, metric_name: str, selector_text: str) -> tuple[PublishedDecision, str]:
        """The one fresh decision the selector names, and its metric as a Quantity string."""
        metric = PUBLISHED_METRICS.get(metric_name)
        if metric is None:
            raise StatusError(
                404, f"the server could not find the metric {metric_name} for namespace {namespace}"
            )
        try:
            selector = parse_selector(selector_text)
        except SelectorError as error:
            raise StatusError(400, f"invalid labelSelector {selector_text!r}: {error}") from error
        # The namespace comes from the path only: a selector can narrow, never widen, what is reachable.
        workload = selector.required_value("workload")
        candidates = (
            self._source.all()
            if workload is None
            else [item for item in [self._source.get(namespace, workload)] if item]
        )
        matches = [
            item
            for item in candidates
            if item.namespace == namespace and selector.matches(selectable_labels(item))
        ]
        if not matches:
            raise StatusError(
                404, f"no workload in namespace {namespace!r} matches labelSelector {selector_text!r}"
            )
        if len(matches) > 1:
            workloads = ", ".join(sorted(item.workload for item in matches))
            raise StatusError(
                400,
                f"labelSelector {selector_text!r} matches {len(matches)} workloads ({workloads}); "
                "add workload=<name> so the HPA reads exactly one",
            )
        item = self._fresh(namespace, matches[0], f"workload {matches[0].workload!r}")
        value = metric.read(item)
        # NaN/Inf have no Quantity form; a broken forecast is "no value yet" (503), not a 500.
        if value is None or not math.isfinite(value):
            raise StatusError(503, f"no {metric_name} value yet for {item.namespace}/{item.workload}")
        try:
            return item, format_quantity(value)
        except ValueError:
            raise StatusError(
                503,
                f"{metric_name} for {item.namespace}/{item.workload} is {value:g}, "
                "beyond the int64 milli-units of a Kubernetes quantity",
            ) from None


def _status_middleware(
    request_seconds: Histogram | None,
) -> Callable[
    [web.Request, Callable[[web.Request], Awaitable[web.StreamResponse]]], Awaitable[web.StreamResponse]
]:
    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        started = time.perf_counter()
        route = (
            request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
        )
        try:
            response = await handler(request)
        except StatusError as error:
            response = status_response(error.code, error.message)
        except web.HTTPNotFound:
            response = status_response(
                404, f"the server could not find the requested resource {request.path}"
            )
        except web.HTTPMethodNotAllowed:
            response = status_response(405, f"method {request.method} is not allowed on {request.path}")
        except Exception:  # a bug must still answer with a Status; its traceback goes to the log once
            log.exception("unexpected error answering a request", extra={"route": route})
            response = status_response(500, "Internal error occurred: unable to answer the request")
        if request_seconds is not None:
            request_seconds.labels(route=route, code=str(response.status)).observe(
                time.perf_counter() - started
            )
        return response

    return middleware


def build_external_metrics_app(
    source: DecisionSource, settings: ExternalMetricsSettings, request_seconds: Histogram | None = None
) -> web.Application:
    """The HTTPS application (serve it with an SSL context from build_server_ssl_context).

    `request_seconds`, if given, is a Histogram with labels (route, code), e.g. from sidecar.telemetry.
    """
    handlers = _Handlers(source, settings)
    app = web.Application(middlewares=[_status_middleware(request_seconds)])
    app.router.add_get("/apis", handlers.discovery)
    app.router.add_get(f"/apis/{EXTERNAL_METRICS_GROUP}", handlers.discovery)
    app.router.add_get(API_PREFIX, handlers.discovery)
    app.router.add_get(API_PREFIX + "/namespaces/{namespace}/{metric}", handlers.external_metric)
    app.router.add_get(METRICS_API_PATH, handlers.keda_metrics_api)
    for path in ("/openapi/v2", "/openapi/v3"):
        app.router.add_get(path, handlers.openapi)
    for path in _ALWAYS_ALLOWED_PATHS:
        app.router.add_get(path, handlers.health)
    return app

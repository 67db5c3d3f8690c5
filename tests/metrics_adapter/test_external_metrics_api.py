"""The external metrics API over real HTTPS on loopback, with real aiohttp clients and kubectl.

TokenReview and SubjectAccessReview cannot reach a real Kubernetes API server here, so they go
through kubernetes-asyncio to a small aiohttp contract server on loopback that implements
POST /apis/authentication.k8s.io/v1/tokenreviews and POST /apis/authorization.k8s.io/v1/subjectaccessreviews
with the request/response shapes of authentication.k8s.io/v1 and authorization.k8s.io/v1.
RefusingApiServer serves the same two endpoints over HTTPS (a certificate from the test CA, which
the kubernetes-asyncio client verifies) and answers them as kube-apiserver does when a review
cannot be done: 401 or 403 with a metav1.Status body.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import shutil
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yarl
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes_asyncio import client as k8s

from metrics_adapter.authentication import (
    REVIEW_TIMEOUT_SECONDS,
    FrontProxyVerifier,
    KubernetesAccessReviewer,
)
from metrics_adapter.external_metrics_api import (
    API_PREFIX,
    ExternalMetricsSettings,
    build_external_metrics_app,
    build_server_ssl_context,
)
from sidecar.latest_decisions import LatestDecisions
from tests.metrics_adapter.conftest import (
    NOW,
    TlsMaterial,
    _issue,
    client_ssl_context,
    published,
    serve,
)

pytestmark = pytest.mark.integration

TOKENS = {
    "hpa-token": ("system:serviceaccount:kube-system:horizontal-pod-autoscaler", ["system:serviceaccounts"])
}
ALLOWED = {("system:serviceaccount:kube-system:horizontal-pod-autoscaler", "ml", "desired_replicas")}


@dataclass
class KubernetesContract:
    """Answers TokenReview from TOKENS and SubjectAccessReview from ALLOWED; records what it was asked."""

    reviews: list[dict[str, Any]] = field(default_factory=list)

    async def token_review(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.reviews.append(body)
        identity = TOKENS.get(body["spec"]["token"])
        status: dict[str, Any] = {"authenticated": identity is not None}
        if identity is not None:
            status["user"] = {"username": identity[0], "groups": identity[1], "uid": "u-1"}
        return web.json_response({**body, "status": status}, status=201)

    async def access_review(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.reviews.append(body)
        spec = body["spec"]
        attributes = spec["resourceAttributes"]
        allowed = (
            attributes["verb"] == "list"
            and attributes["group"] == "external.metrics.k8s.io"
            and (spec["user"], attributes["namespace"], attributes["resource"]) in ALLOWED
        )
        return web.json_response({**body, "status": {"allowed": allowed}}, status=201)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/apis/authentication.k8s.io/v1/tokenreviews", self.token_review)
        app.router.add_post("/apis/authorization.k8s.io/v1/subjectaccessreviews", self.access_review)
        return app


@dataclass
class Running:
    url: str
    decisions: LatestDecisions
    contract: KubernetesContract
    tls: TlsMaterial

    async def get(
        self, path: str, *, client: Path | None = None, headers: dict[str, str] | None = None, **params: str
    ) -> tuple[int, dict[str, Any], aiohttp.typedefs.LooseHeaders]:
        pem = None
        if client is not None:
            pem = next(p for p in vars(self.tls).values() if p.cert_file == client)
        context = client_ssl_context(self.tls, pem)
        async with (
            aiohttp.ClientSession() as session,
            session.get(self.url + path, params=params, headers=headers, ssl=context) as response,
        ):
            return response.status, await response.json(content_type=None), response.headers


@pytest.fixture
async def running(tls: TlsMaterial, fixed_clock: Callable[[], float]) -> AsyncIterator[Running]:
    decisions = LatestDecisions()
    decisions.publish(published("llama", replicas=7, forecast_rps=130.25, labels={"model": "llama-3"}))
    decisions.publish(published("mistral", replicas=2, forecast_rps=None, labels={"model": "mistral"}))
    decisions.publish(published("stale", replicas=1, published_at=NOW - 600))
    decisions.publish(published("llama", namespace="other", replicas=50, labels={"model": "llama-3"}))
    contract = KubernetesContract()
    async with serve(contract.app(), None) as contract_url:
        configuration = k8s.Configuration(host=contract_url)
        async with k8s.ApiClient(configuration) as api_client:
            settings_ = ExternalMetricsSettings(
                max_age_seconds=60.0,
                clock=fixed_clock,
                front_proxy=FrontProxyVerifier(tls.front_proxy_ca.cert_bytes, ["front-proxy-client"]),
                reviewer=KubernetesAccessReviewer(api_client, fixed_clock),
            )
            server_tls = build_server_ssl_context(
                str(tls.server.cert_file), str(tls.server.key_file), str(tls.front_proxy_ca.cert_file)
            )
            async with serve(build_external_metrics_app(decisions, settings_), server_tls) as url:
                yield Running(url, decisions, contract, tls)


MASTER = {"X-Remote-User": "system:kube-aggregator", "X-Remote-Group": "system:masters"}
HPA = {"Authorization": "Bearer hpa-token"}


async def test_discovery_documents(running: Running) -> None:
    client = running.tls.front_proxy_client.cert_file
    status, groups, _ = await running.get("/apis", client=client, headers=MASTER)
    assert status == 200
    assert groups["groups"][0]["preferredVersion"]["groupVersion"] == "external.metrics.k8s.io/v1beta1"
    status, group, _ = await running.get("/apis/external.metrics.k8s.io", client=client, headers=MASTER)
    assert (status, group["kind"]) == (200, "APIGroup")
    status, resources, _ = await running.get(API_PREFIX, client=client, headers=MASTER)
    assert status == 200
    assert {r["name"] for r in resources["resources"]} == {"desired_replicas", "forecast_requests_per_second"}
    assert all(r["namespaced"] and r["verbs"] == ["get"] for r in resources["resources"])


async def test_health_needs_no_credentials_and_openapi_is_absent(running: Running) -> None:
    for path in ("/healthz", "/livez", "/readyz"):
        async with (
            aiohttp.ClientSession() as session,
            session.get(running.url + path, ssl=client_ssl_context(running.tls)) as response,
        ):
            assert (response.status, await response.text()) == (200, "ok")
    status, body, _ = await running.get("/openapi/v2")
    assert (status, body["kind"], body["reason"]) == (404, "Status", "NotFound")


@pytest.mark.parametrize(
    ("metric", "selector", "code", "value"),
    [
        pytest.param("desired_replicas", "workload=llama", 200, "7", id="replicas of one workload"),
        pytest.param("desired_replicas", "model in (llama-3)", 200, "7", id="selected by model label"),
        pytest.param(
            "forecast_requests_per_second", "workload=llama", 200, "130250m", id="forecast in milli"
        ),
        pytest.param(
            "forecast_requests_per_second", "workload=mistral", 503, None, id="no forecast yet is 503"
        ),
        pytest.param("desired_replicas", "workload=stale", 503, None, id="stale decision is 503 not a value"),
        pytest.param("desired_replicas", "workload=nope", 404, None, id="no matching workload is 404"),
        pytest.param("queue_depth", "workload=llama", 404, None, id="unknown metric is 404"),
        pytest.param("desired_replicas", "model", 400, None, id="selector matching two workloads is 400"),
        pytest.param("desired_replicas", "workload in (", 400, None, id="bad selector is 400"),
        pytest.param(
            "desired_replicas",
            "namespace=other,workload=llama",
            404,
            None,
            id="cannot reach another namespace",
        ),
    ],
)
async def test_external_metric(
    running: Running, metric: str, selector: str, code: int, value: str | None
) -> None:
    status, body, headers = await running.get(
        f"{API_PREFIX}/namespaces/ml/{metric}",
        client=running.tls.front_proxy_client.cert_file,
        headers=MASTER,
        labelSelector=selector,
    )
    assert status == code
    assert "Retry-After" not in headers
    if value is None:
        assert (body["kind"], body["code"], body["status"]) == ("Status", code, "Failure")
        return
    assert body["kind"] == "ExternalMetricValueList"
    [item] = body["items"]
    assert item["value"] == value
    assert item["metricLabels"]["namespace"] == "ml"
    assert item["timestamp"] == "2027-01-15T07:59:55Z"


async def test_bad_selector_message_quotes_the_term(running: Running) -> None:
    status, body, _ = await running.get(
        f"{API_PREFIX}/namespaces/ml/desired_replicas",
        client=running.tls.front_proxy_client.cert_file,
        headers=MASTER,
        labelSelector="workload=llama,a:b",
    )
    assert status == 400
    assert "'a:b'" in body["message"]


async def test_token_review_then_access_review(running: Running) -> None:
    path = f"{API_PREFIX}/namespaces/ml/desired_replicas"
    status, body, _ = await running.get(path, headers=HPA, labelSelector="workload=llama")
    assert (status, body["items"][0]["value"]) == (200, "7")
    status, body, _ = await running.get(
        f"{API_PREFIX}/namespaces/ml/forecast_requests_per_second",
        headers=HPA,
        labelSelector="workload=llama",
    )
    assert (status, body["reason"]) == (403, "Forbidden")
    status, _, _ = await running.get(
        path, headers={"Authorization": "Bearer forged"}, labelSelector="workload=llama"
    )
    assert status == 401
    access = [
        r["spec"]["resourceAttributes"] for r in running.contract.reviews if "resourceAttributes" in r["spec"]
    ]
    assert access[0] == {
        "group": "external.metrics.k8s.io",
        "namespace": "ml",
        "resource": "desired_replicas",
        "verb": "list",
        "version": "v1beta1",
    }


async def test_reviews_are_cached(running: Running) -> None:
    path = f"{API_PREFIX}/namespaces/ml/desired_replicas"
    for _ in range(3):
        status, _, _ = await running.get(path, headers=HPA, labelSelector="workload=llama")
        assert status == 200
    for _ in range(3):
        status, _, _ = await running.get(path, headers={"Authorization": "Bearer forged"})
        assert status == 401
    # One TokenReview and one SubjectAccessReview for the good token, one TokenReview for the forged one.
    assert len(running.contract.reviews) == 3


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param("Bearer ", id="empty token"),
        pytest.param("Bearer \u00a0", id="token of a non-breaking space"),
        pytest.param("Bearer two words", id="token with a space"),
    ],
)
async def test_a_malformed_bearer_token_is_401_without_a_token_review(
    running: Running, authorization: str
) -> None:
    status, body, _ = await running.get(
        f"{API_PREFIX}/namespaces/ml/desired_replicas", headers={"Authorization": authorization}
    )
    assert (status, body["reason"]) == (401, "Unauthorized")
    assert "no well-formed bearer token" in body["message"]
    assert running.contract.reviews == []


async def test_the_bearer_scheme_is_case_insensitive(running: Running) -> None:
    status, _, _ = await running.get(
        f"{API_PREFIX}/namespaces/ml/desired_replicas",
        headers={"Authorization": "bearer hpa-token"},
        labelSelector="workload=llama",
    )
    assert status == 200


async def test_no_credentials_is_401(running: Running) -> None:
    status, body, _ = await running.get(f"{API_PREFIX}/namespaces/ml/desired_replicas")
    assert (status, body["reason"]) == (401, "Unauthorized")


async def test_wrong_cn_cannot_impersonate(running: Running) -> None:
    status, _, _ = await running.get(
        f"{API_PREFIX}/namespaces/ml/desired_replicas",
        client=running.tls.front_proxy_wrong_cn.cert_file,
        headers=MASTER,
        labelSelector="workload=llama",
    )
    assert status == 401


async def test_untrusted_ca_cannot_impersonate(running: Running) -> None:
    """The rogue certificate claims the allowed CN; the TLS layer or the verifier must refuse it."""
    try:
        status, _, _ = await running.get(
            f"{API_PREFIX}/namespaces/ml/desired_replicas",
            client=running.tls.rogue_client.cert_file,
            headers=MASTER,
            labelSelector="workload=llama",
        )
    except (aiohttp.ClientConnectionError, ssl.SSLError):
        return
    assert status == 401


def test_verifier_rejects_rogue_and_wrong_cn_directly(tls: TlsMaterial) -> None:
    """Independent of the TLS handshake: the verifier itself checks issuer signature and CN."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    def der(path: Path) -> bytes:
        return x509.load_pem_x509_certificate(path.read_bytes()).public_bytes(Encoding.DER)

    verifier = FrontProxyVerifier(tls.front_proxy_ca.cert_bytes, ["front-proxy-client"])
    assert verifier.trusts(der(tls.front_proxy_client.cert_file))
    assert not verifier.trusts(der(tls.rogue_client.cert_file))
    assert not verifier.trusts(der(tls.front_proxy_wrong_cn.cert_file))
    assert not verifier.trusts(None)


@pytest.fixture
async def open_server(tls: TlsMaterial, fixed_clock: Callable[[], float]) -> AsyncIterator[tuple[str, Path]]:
    decisions = LatestDecisions()
    decisions.publish(published("llama", replicas=7, labels={"model": "llama-3"}))
    app = build_external_metrics_app(
        decisions,
        ExternalMetricsSettings(max_age_seconds=60.0, clock=fixed_clock, allow_unauthenticated=True),
    )
    server_tls = build_server_ssl_context(str(tls.server.cert_file), str(tls.server.key_file), None)
    async with serve(app, server_tls) as url:
        yield url, tls.serving_ca.cert_file


async def test_random_selectors_never_500(open_server: tuple[str, Path]) -> None:
    url, ca = open_server
    context = ssl.create_default_context(cafile=str(ca))
    codes: list[int] = []
    async with aiohttp.ClientSession() as session:

        @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
        @given(st.text(max_size=30))
        def probe(selector: str) -> None:
            async def one() -> int:
                async with session.get(
                    f"{url}{API_PREFIX}/namespaces/ml/desired_replicas",
                    params={"labelSelector": selector},
                    ssl=context,
                ) as response:
                    body = await response.json(content_type=None)
                    assert body["kind"] in ("Status", "ExternalMetricValueList")
                    return response.status

            codes.append(asyncio.run_coroutine_threadsafe(one(), loop).result())

        loop = asyncio.get_running_loop()
        await asyncio.to_thread(probe)
    assert codes and all(code in (200, 400, 404) for code in codes)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
async def test_kubectl_get_raw(open_server: tuple[str, Path], tmp_path: Path) -> None:
    url, ca = open_server
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: local\n"
        f"clusters:\n- name: local\n  cluster:\n    server: {url}\n    certificate-authority: {ca}\n"
        "users:\n- name: local\n  user: {token: local-only}\n"
        "contexts:\n- name: local\n  context: {cluster: local, user: local}\n"
    )
    process = await asyncio.create_subprocess_exec(
        "kubectl",
        "--kubeconfig",
        str(kubeconfig),
        "get",
        "--raw",
        f"{API_PREFIX}/namespaces/ml/desired_replicas?labelSelector=model%3Dllama-3",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, stderr.decode()
    assert json.loads(stdout)["items"][0]["value"] == "7"


@pytest.mark.parametrize(
    ("workload", "code", "expected"),
    [
        pytest.param(
            "llama",
            200,
            {"desired_replicas": 7, "forecast_requests_per_second": 130.25},
            id="value and forecast",
        ),
        pytest.param("mistral", 200, {"desired_replicas": 2}, id="no forecast leaves the key out, never 0"),
        pytest.param("stale", 503, None, id="stale decision is 503"),
        pytest.param("nope", 404, None, id="unknown workload is 404"),
    ],
)
async def test_keda_metrics_api(
    running: Running, workload: str, code: int, expected: dict[str, float] | None
) -> None:
    status, body, _ = await running.get(f"/keda/v1/namespaces/ml/workloads/{workload}", headers=HPA)
    assert status == code
    if expected is None:
        assert body["kind"] == "Status"
        return
    assert {
        key: body[key] for key in body if key in ("desired_replicas", "forecast_requests_per_second")
    } == expected
    assert body["reason"] == "forecast"


async def _ask_with_token(
    tls: TlsMaterial, fixed_clock: Callable[[], float], api_app: web.Application
) -> Any:
    decisions = LatestDecisions()
    decisions.publish(published("llama"))
    async with (
        serve(api_app, None) as api_url,
        k8s.ApiClient(k8s.Configuration(host=api_url)) as api,
    ):
        settings_ = ExternalMetricsSettings(
            max_age_seconds=60.0, clock=fixed_clock, reviewer=KubernetesAccessReviewer(api, fixed_clock)
        )
        server_tls = build_server_ssl_context(str(tls.server.cert_file), str(tls.server.key_file), None)
        async with serve(build_external_metrics_app(decisions, settings_), server_tls) as url:
            running = Running(url, decisions, KubernetesContract(), tls)
            started = time.monotonic()
            # Bounded, so a review without a timeout of its own fails here instead of hanging the run.
            async with asyncio.timeout(REVIEW_TIMEOUT_SECONDS + 10):
                status, body, _ = await running.get(
                    f"{API_PREFIX}/namespaces/ml/desired_replicas",
                    headers=HPA,
                    labelSelector="workload=llama",
                )
            return status, body, time.monotonic() - started


async def test_an_api_server_that_cannot_review_is_a_logged_401(
    tls: TlsMaterial, fixed_clock: Callable[[], float], caplog
) -> None:
    """Finding 4: an API server without the review endpoints (404s) once gave a 500 and no log
    line; like kube-apiserver we refuse (401) and say why, once per request."""
    with caplog.at_level(logging.WARNING, logger="metrics_adapter"):
        status, body, _ = await _ask_with_token(tls, fixed_clock, web.Application())
    assert (status, body["kind"], body["reason"]) == (401, "Status", "Unauthorized")
    assert "could not be verified" in body["message"]
    warnings = [r for r in caplog.records if "cannot verify a bearer token" in r.getMessage()]
    assert len(warnings) == 1 and "TokenReview: the API server answered 404" in warnings[0].error


class RefusingApiServer:
    """The review endpoints of authentication.k8s.io/v1 and authorization.k8s.io/v1 as
    kube-apiserver answers them when the sidecar itself may not ask: 401 when its own service
    account token is not accepted, 403 when it lacks RBAC to create the review
    (system:auth-delegator), each with a metav1.Status body. `refuse` names the endpoint that
    refuses; the other answers as a healthy server does."""

    def __init__(self, refuse: str, code: int) -> None:
        self.refuse, self.code = refuse, code
        self.asked: list[str] = []

    async def review(self, request: web.Request) -> web.Response:
        endpoint = request.path.rsplit("/", 1)[1]
        self.asked.append(endpoint)
        body = await request.json()
        if endpoint == self.refuse:
            reason = "Unauthorized" if self.code == 401 else "Forbidden"
            status = {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "reason": reason,
                "message": f"{endpoint}.x is forbidden",
                "code": self.code,
            }
            return web.json_response(status, status=self.code)
        if endpoint == "tokenreviews":
            user = {"username": "system:serviceaccount:kube-system:horizontal-pod-autoscaler"}
            return web.json_response({**body, "status": {"authenticated": True, "user": user}}, status=201)
        return web.json_response({**body, "status": {"allowed": True}}, status=201)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/apis/authentication.k8s.io/v1/tokenreviews", self.review)
        app.router.add_post("/apis/authorization.k8s.io/v1/subjectaccessreviews", self.review)
        return app


@pytest.mark.parametrize(
    ("refuse", "code", "expected", "warning"),
    [
        pytest.param("tokenreviews", 401, 401, "cannot verify a bearer token", id="TokenReview 401"),
        pytest.param("tokenreviews", 403, 401, "cannot verify a bearer token", id="TokenReview 403"),
        pytest.param("subjectaccessreviews", 401, 403, "cannot check access", id="SubjectAccessReview 401"),
        pytest.param("subjectaccessreviews", 403, 403, "cannot check access", id="SubjectAccessReview 403"),
    ],
)
async def test_an_api_server_refusing_a_review_is_one_logged_refusal(
    tls: TlsMaterial, fixed_clock: Callable[[], float], caplog, refuse, code, expected, warning
) -> None:
    """Finding 4: kube-apiserver answers 401/403 when a review cannot be done (over HTTPS, as
    here); the caller gets 401 for a token that could not be checked, 403 for an access check,
    never a 500, with one warning naming the review and the API server's answer, and the
    refused review is counted on the Kubernetes call metrics."""
    from prometheus_client import CollectorRegistry

    from sidecar.telemetry import build_call_metrics

    fake = RefusingApiServer(refuse, code)
    api_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    api_tls.load_cert_chain(tls.server.cert_file, tls.server.key_file)
    registry = CollectorRegistry()
    decisions = LatestDecisions()
    decisions.publish(published("llama"))
    async with serve(fake.app(), api_tls) as api_url:
        configuration = k8s.Configuration(host=api_url)
        configuration.ssl_ca_cert = str(tls.serving_ca.cert_file)
        async with k8s.ApiClient(configuration) as api:
            reviewer = KubernetesAccessReviewer(api, fixed_clock, metrics=build_call_metrics(registry))
            settings_ = ExternalMetricsSettings(max_age_seconds=60.0, clock=fixed_clock, reviewer=reviewer)
            server_tls = build_server_ssl_context(str(tls.server.cert_file), str(tls.server.key_file), None)
            async with serve(build_external_metrics_app(decisions, settings_), server_tls) as url:
                running = Running(url, decisions, KubernetesContract(), tls)
                with caplog.at_level(logging.DEBUG, logger="metrics_adapter"):
                    status, body, _ = await running.get(
                        f"{API_PREFIX}/namespaces/ml/desired_replicas",
                        headers=HPA,
                        labelSelector="workload=llama",
                    )
    assert (status, body["kind"], body["code"]) == (expected, "Status", expected)
    assert fake.asked[-1] == refuse
    ours = [
        r for r in caplog.records if r.name.startswith("metrics_adapter") and r.levelno >= logging.WARNING
    ]
    assert len(ours) == 1 and ours[0].getMessage().startswith(warning), [r.getMessage() for r in ours]
    kind = "TokenReview" if refuse == "tokenreviews" else "SubjectAccessReview"
    assert f"{kind}: the API server answered {code}" in ours[0].error
    assert not ours[0].exc_info, "an expected refusal, not a traceback"
    labels = {"call": f"create_{kind.lower()}", "reason": str(code)}
    assert registry.get_sample_value("autoscaler_kubernetes_request_errors_total", labels) == 1.0


async def test_a_silent_api_server_costs_a_review_its_timeout_not_the_clients(
    tls: TlsMaterial, fixed_clock: Callable[[], float], caplog
) -> None:
    """Finding 3: an API server that accepts and never answers held each request for the
    client's full 15 s; now the review gives up after REVIEW_TIMEOUT_SECONDS and the caller gets
    a 401 well inside KEDA's 3 s."""
    release = asyncio.Event()

    async def never(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(status=500)

    silent = web.Application()
    silent.router.add_post("/apis/authentication.k8s.io/v1/tokenreviews", never)
    try:
        with caplog.at_level(logging.WARNING, logger="metrics_adapter"):
            status, body, took = await _ask_with_token(tls, fixed_clock, silent)
    finally:
        release.set()
    assert status == 401 and "no answer from the API server within 1 s" in body["message"]
    assert REVIEW_TIMEOUT_SECONDS <= took < REVIEW_TIMEOUT_SECONDS + 1.5


async def test_rogue_certificate_accepted_by_tls_still_cannot_impersonate(
    tls: TlsMaterial, fixed_clock: Callable[[], float], tmp_path: Path
) -> None:
    """In a cluster the serving TLS layer also trusts client-ca-file, so a certificate from another CA
    completes the handshake; only the requestheader check may then stop X-Remote-User. Here the TLS
    layer trusts a second CA too, whose client certificate claims the allowed CN, so the 401 can
    come from the verifier alone."""
    _, other_ca_cert, other_ca_key = _issue(tmp_path, "client-ca", "cluster-client-ca", None, is_ca=True)
    impostor, _, _ = _issue(tmp_path, "impostor", "front-proxy-client", (other_ca_cert, other_ca_key))
    decisions = LatestDecisions()
    decisions.publish(published("llama", replicas=7))
    settings_ = ExternalMetricsSettings(
        max_age_seconds=60.0,
        clock=fixed_clock,
        front_proxy=FrontProxyVerifier(tls.front_proxy_ca.cert_bytes, ["front-proxy-client"]),
    )
    server_tls = build_server_ssl_context(
        str(tls.server.cert_file), str(tls.server.key_file), str(tls.front_proxy_ca.cert_file)
    )
    server_tls.load_verify_locations(cafile=str(tmp_path / "client-ca.crt"))
    path = f"{API_PREFIX}/namespaces/ml/desired_replicas"
    async with (
        serve(build_external_metrics_app(decisions, settings_), server_tls) as url,
        aiohttp.ClientSession() as session,
    ):
        for client, expected in ((impostor, 401), (tls.front_proxy_client, 200)):
            async with session.get(
                url + path,
                params={"labelSelector": "workload=llama"},
                headers=MASTER,
                ssl=client_ssl_context(tls, client),
            ) as response:
                # 200 for the genuine front-proxy certificate shows the server is not just refusing all.
                assert response.status == expected


async def test_hpa_raw_query_encoding(running: Running) -> None:
    """The query exactly as the aggregator re-encodes it (url.Values.Encode: space as '+')."""
    context = client_ssl_context(running.tls, running.tls.front_proxy_client)
    running.decisions.publish(published("queue", replicas=9, labels={"env": "a", "queue": "heavy"}))
    query = "labelSelector=env+in+%28a%2Cb%29%2Cqueue%3Dheavy"
    raw = f"{running.url}{API_PREFIX}/namespaces/ml/desired_replicas?{query}"
    async with (
        aiohttp.ClientSession() as session,
        session.get(yarl.URL(raw, encoded=True), headers=MASTER, ssl=context) as response,
    ):
        assert response.status == 200
        body = await response.json()
    assert [item["value"] for item in body["items"]] == ["9"]


async def test_forecast_beyond_a_quantity_is_unavailable_not_an_internal_error(running: Running) -> None:
    running.decisions.publish(published("huge", replicas=4, forecast_rps=1e17))
    status, body, _ = await running.get(
        f"{API_PREFIX}/namespaces/ml/forecast_requests_per_second",
        client=running.tls.front_proxy_client.cert_file,
        headers=MASTER,
        labelSelector="workload=huge",
    )
    assert (status, body["reason"]) == (503, "ServiceUnavailable")
    assert "ml/huge is 1e+17" in body["message"] and "quantity" in body["message"]


async def test_nan_forecast_is_never_served(running: Running) -> None:
    running.decisions.publish(published("broken", replicas=4, forecast_rps=math.nan))
    status, body, headers = await running.get(
        f"{API_PREFIX}/namespaces/ml/forecast_requests_per_second",
        client=running.tls.front_proxy_client.cert_file,
        headers=MASTER,
        labelSelector="workload=broken",
    )
    assert (status, body["reason"]) == (503, "ServiceUnavailable")
    assert "Retry-After" not in headers
    context = client_ssl_context(running.tls)
    async with (
        aiohttp.ClientSession() as session,
        session.get(running.url + "/keda/v1/namespaces/ml/workloads/broken", headers=HPA, ssl=context) as r,
    ):
        text = await r.text()

    # Strict JSON: a bare NaN token would make json.loads(parse_constant=...) raise.
    def strict(token: str) -> float:
        raise ValueError(f"non-JSON constant {token}")

    payload = json.loads(text, parse_constant=strict)
    assert r.status == 200
    assert payload["desired_replicas"] == 4
    assert "forecast_requests_per_second" not in payload


async def test_front_proxy_extra_headers_reach_the_access_review(running: Running) -> None:
    headers = {
        "X-Remote-User": "system:serviceaccount:kube-system:horizontal-pod-autoscaler",
        "X-Remote-Group": "system:serviceaccounts",
        "X-Remote-Extra-Scopes%2FKind": "read-only",
    }
    status, _, _ = await running.get(
        f"{API_PREFIX}/namespaces/ml/desired_replicas",
        client=running.tls.front_proxy_client.cert_file,
        headers=headers,
        labelSelector="workload=llama",
    )
    assert status == 200
    [review] = [r for r in running.contract.reviews if "resourceAttributes" in r["spec"]]
    assert review["spec"]["user"] == headers["X-Remote-User"]
    assert review["spec"]["groups"] == ["system:serviceaccounts"]
    assert review["spec"]["extra"] == {"scopes/kind": ["read-only"]}


def test_the_review_caches_hold_a_bounded_number_of_entries() -> None:
    """Each distinct token (a client cycling bad tokens) is one entry: never more than the bound."""
    from metrics_adapter.authentication import _TtlCache

    cache: _TtlCache[str, bool] = _TtlCache(10.0, lambda: NOW, max_entries=100)
    for index in range(1000):
        cache.put(f"token-{index}", False)
        assert len(cache._entries) <= 100
    assert cache.get("token-999") is False

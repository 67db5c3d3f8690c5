"""The servers as the sidecar's composition root (sidecar.main.serve) wires them: HTTPS with
front-proxy client certificates, gRPC over TLS, and /metrics, on loopback with real clients."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import grpc
import pytest

from metrics_adapter import externalscaler_pb2 as pb
from metrics_adapter import externalscaler_pb2_grpc as pb_grpc
from sidecar.clock import SystemClock
from sidecar.core import load_core
from sidecar.main import Service, serve
from sidecar.settings import Settings
from tests.metrics_adapter.conftest import TlsMaterial, client_ssl_context, published

pytestmark = pytest.mark.integration

METRIC = "/apis/external.metrics.k8s.io/v1beta1/namespaces/ml/desired_replicas"
AGGREGATOR = {"X-Remote-User": "system:kube-aggregator", "X-Remote-Group": "system:masters"}


async def test_the_sidecar_serves_every_adapter_over_tls_then_stops(tls: TlsMaterial) -> None:
    settings = Settings(
        server={
            "host": "127.0.0.1",
            "health_port": 0,
            "http_port": 0,
            "grpc_port": 0,
            "tls_cert_file": str(tls.server.cert_file),
            "tls_key_file": str(tls.server.key_file),
            "client_ca_file": str(tls.front_proxy_ca.cert_file),
            "requestheader_allowed_names": ["front-proxy-client"],
        },
        kubernetes={"enabled": False},
    )
    stop = asyncio.Event()
    services: list[Service] = []
    task = asyncio.create_task(
        serve(settings, core=load_core(), clock=SystemClock(), stop=stop, started=services.append)
    )
    while not services and not task.done():
        await asyncio.sleep(0.01)
    assert services, f"serve failed to start: {task.exception()!r}"
    service = services[0]
    service.latest.publish(published("llama", replicas=4, published_at=time.time()))
    https = f"https://{service.addresses['external_metrics']}"
    health = f"http://{service.addresses['health']}"
    try:
        async with aiohttp.ClientSession() as session:
            proxy = client_ssl_context(tls, tls.front_proxy_client)
            async with session.get(https + METRIC, headers=AGGREGATOR, ssl=proxy) as response:
                assert response.status == 200
                assert (await response.json())["items"][0]["value"] == "4"
            # The same headers from a client without the front-proxy certificate are not trusted.
            plain = client_ssl_context(tls)
            async with session.get(https + METRIC, headers=AGGREGATOR, ssl=plain) as response:
                assert response.status == 401
        credentials = grpc.ssl_channel_credentials(root_certificates=tls.serving_ca.cert_bytes)
        port = service.addresses["keda_grpc"].rsplit(":", 1)[1]
        async with grpc.aio.secure_channel(f"localhost:{port}", credentials) as channel:
            reply = await pb_grpc.ExternalScalerStub(channel).GetMetrics(
                pb.GetMetricsRequest(scaledObjectRef=pb.ScaledObjectRef(name="llama", namespace="ml"))
            )
            assert reply.metricValues[0].metricValue == 4
        async with aiohttp.ClientSession() as session, session.get(health + "/metrics") as response:
            text = await response.text()
        assert 'autoscaler_desired_replicas{namespace="ml",workload="llama"} 4.0' in text
        # Both servers report into the one request histogram.
        assert 'route="/externalscaler.ExternalScaler/GetMetrics"' in text
        assert "/apis/external.metrics.k8s.io/v1beta1/namespaces/{namespace}/{metric}" in text
    finally:
        stop.set()
        await task
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(health + "/metrics")

"""start_adapter_servers: every configured server comes up on loopback, answers, and stops."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp
import grpc
import pytest

from metrics_adapter import externalscaler_pb2 as pb
from metrics_adapter import externalscaler_pb2_grpc as pb_grpc
from metrics_adapter.servers import AdapterConfig, start_adapter_servers
from sidecar.latest_decisions import LatestDecisions
from sidecar.telemetry import build_telemetry
from tests.metrics_adapter.conftest import TlsMaterial, client_ssl_context, published

pytestmark = pytest.mark.integration


async def test_all_servers_answer_then_stop(tls: TlsMaterial, fixed_clock: Callable[[], float]) -> None:
    decisions = LatestDecisions()
    decisions.publish(published("llama", replicas=4))
    config = AdapterConfig(
        tls_cert_file=tls.server.cert_file,
        tls_key_file=tls.server.key_file,
        host="127.0.0.1",
        https_port=0,
        grpc_port=0,
        metrics_port=0,
        grpc_tls=True,
        requestheader_ca_file=tls.front_proxy_ca.cert_file,
        clock=fixed_clock,
    )
    servers = await start_adapter_servers(decisions, config, build_telemetry(decisions, fixed_clock))
    try:
        assert servers.https_port and servers.grpc_port and servers.metrics_port
        context = client_ssl_context(tls, tls.front_proxy_client)
        async with aiohttp.ClientSession() as session:
            async with session.get(
                f"https://127.0.0.1:{servers.https_port}/apis/external.metrics.k8s.io/v1beta1/namespaces/ml/desired_replicas",
                headers={"X-Remote-User": "system:kube-aggregator", "X-Remote-Group": "system:masters"},
                ssl=context,
            ) as response:
                assert response.status == 200
                assert (await response.json())["items"][0]["value"] == "4"
            # Without the front-proxy certificate the same headers are not trusted.
            async with session.get(
                f"https://127.0.0.1:{servers.https_port}/apis/external.metrics.k8s.io/v1beta1/namespaces/ml/desired_replicas",
                headers={"X-Remote-User": "system:kube-aggregator", "X-Remote-Group": "system:masters"},
                ssl=client_ssl_context(tls),
            ) as response:
                assert response.status == 401
            async with session.get(f"http://127.0.0.1:{servers.metrics_port}/metrics") as response:
                assert "autoscaler_desired_replicas" in await response.text()
        credentials = grpc.ssl_channel_credentials(root_certificates=tls.serving_ca.cert_bytes)
        async with grpc.aio.secure_channel(f"localhost:{servers.grpc_port}", credentials) as channel:
            reply = await pb_grpc.ExternalScalerStub(channel).GetMetrics(
                pb.GetMetricsRequest(scaledObjectRef=pb.ScaledObjectRef(name="llama", namespace="ml"))
            )
            assert reply.metricValues[0].metricValue == 4
    finally:
        await servers.stop(0)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(f"http://127.0.0.1:{servers.metrics_port}/metrics")

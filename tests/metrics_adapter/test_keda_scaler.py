"""The KEDA external scaler over real gRPC on loopback, called by a client built from our proto."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
from grpc_tools import protoc
from prometheus_client.parser import text_string_to_metric_families

from metrics_adapter import externalscaler_pb2 as pb
from metrics_adapter import externalscaler_pb2_grpc as pb_grpc
from metrics_adapter.keda_scaler import KedaScalerSettings, build_keda_server
from sidecar.latest_decisions import LatestDecisions
from sidecar.telemetry import build_telemetry
from tests.metrics_adapter.conftest import NOW, Pem, TlsMaterial, published

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


async def _start(
    decisions: LatestDecisions, clock: Callable[[], float], tls: tuple[bytes, bytes] | None = None
) -> tuple[grpc.aio.Server, int]:
    settings = KedaScalerSettings(max_age_seconds=60.0, clock=clock, stream_interval_seconds=0.02)
    server, port = build_keda_server(decisions, settings, "127.0.0.1:0", tls)
    await server.start()
    return server, port


@pytest.fixture
def decisions() -> LatestDecisions:
    store = LatestDecisions()
    store.publish(published("llama", replicas=7))
    store.publish(published("idle", replicas=0, forecast_rps=0.0))
    store.publish(published("noise", replicas=0, forecast_rps=0.01))
    store.publish(published("stale", replicas=3, published_at=NOW - 600))
    return store


@pytest.fixture
async def stub(
    decisions: LatestDecisions, fixed_clock: Callable[[], float]
) -> AsyncIterator[pb_grpc.ExternalScalerStub]:
    server, port = await _start(decisions, fixed_clock)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield pb_grpc.ExternalScalerStub(channel)
    await server.stop(None)


def ref(name: str, **metadata: str) -> pb.ScaledObjectRef:
    return pb.ScaledObjectRef(name=name, namespace="ml", scalerMetadata=metadata)


async def test_metric_spec_targets_one_replica_per_unit(stub: pb_grpc.ExternalScalerStub) -> None:
    response = await stub.GetMetricSpec(ref("llama"))
    [spec] = response.metricSpecs
    assert (spec.metricName, spec.targetSize, spec.targetSizeFloat) == ("desired_replicas", 1, 1.0)


@pytest.mark.parametrize(
    ("scaled_object", "metadata", "replicas", "active"),
    [
        pytest.param("llama", {}, 7, True, id="workload named like the ScaledObject"),
        pytest.param("frontend", {"workload": "llama"}, 7, True, id="workload from trigger metadata"),
        pytest.param("idle", {}, 0, False, id="zero replicas and no forecast is inactive"),
        pytest.param("noise", {}, 0, False, id="zero replicas with a forecast the core called noise"),
    ],
)
async def test_metrics_and_activity(
    stub: pb_grpc.ExternalScalerStub,
    scaled_object: str,
    metadata: dict[str, str],
    replicas: int,
    active: bool,
) -> None:
    metrics = await stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref(scaled_object, **metadata)))
    [value] = metrics.metricValues
    assert (value.metricValue, value.metricValueFloat) == (replicas, float(replicas))
    assert (await stub.IsActive(ref(scaled_object, **metadata))).result is active


@pytest.mark.parametrize(
    ("scaled_object", "code"),
    [
        pytest.param("stale", grpc.StatusCode.UNAVAILABLE, id="stale decision is unavailable, not zero"),
        pytest.param("unknown", grpc.StatusCode.UNAVAILABLE, id="no decision is unavailable, not zero"),
        pytest.param("", grpc.StatusCode.INVALID_ARGUMENT, id="missing name is invalid"),
    ],
)
async def test_missing_data_is_an_error(
    stub: pb_grpc.ExternalScalerStub, scaled_object: str, code: grpc.StatusCode
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref(scaled_object)))
    assert error.value.code() == code
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.IsActive(ref(scaled_object))


@pytest.mark.parametrize("name", ["forecast_requests_per_second", "s0-desired_replicas"])
async def test_a_metric_this_scaler_does_not_serve_is_invalid(
    stub: pb_grpc.ExternalScalerStub, name: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref("llama"), metricName=name))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert repr(name) in (error.value.details() or "")


async def test_stream_pushes_true_when_forecast_demand_appears(
    stub: pb_grpc.ExternalScalerStub, decisions: LatestDecisions
) -> None:
    """A workload at zero turns active as soon as the decision asks a replica ahead of forecast load,
    before traffic; a forecast the core judged below the activation threshold (zero replicas
    asked) keeps it inactive."""
    stream = stub.StreamIsActive(ref("idle"))
    first = await asyncio.wait_for(stream.read(), timeout=30)
    assert first.result is False
    decisions.publish(published("idle", replicas=1, forecast_rps=12.0))
    pushed = await asyncio.wait_for(stream.read(), timeout=30)
    assert pushed.result is True
    stream.cancel()


async def test_every_replica_answers_the_same(fixed_clock: Callable[[], float]) -> None:
    """Two replicas, each with its own store holding the same published records (as two sidecars
    reading the same Prometheus would), answer byte-identically, however often they are asked."""
    stores = []
    for _ in range(2):
        store = LatestDecisions()
        store.publish(published("llama", replicas=7))
        stores.append(store)
    servers = [await _start(store, fixed_clock) for store in stores]
    answers = []
    for _, port in servers:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.ExternalScalerStub(channel)
            for _ in range(3):
                spec = await stub.GetMetricSpec(ref("llama"))
                metrics = await stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref("llama")))
                active = (await stub.IsActive(ref("llama"))).result
                answers.append((spec.SerializeToString(), metrics.SerializeToString(), active))
    for server, _ in servers:
        await server.stop(None)
    assert len(set(answers)) == 1


async def test_tls(decisions: LatestDecisions, fixed_clock: Callable[[], float], tls: TlsMaterial) -> None:
    server, port = await _start(
        decisions, fixed_clock, (tls.server.cert_file.read_bytes(), tls.server.key_file.read_bytes())
    )
    credentials = grpc.ssl_channel_credentials(root_certificates=tls.serving_ca.cert_bytes)
    async with grpc.aio.secure_channel(f"localhost:{port}", credentials) as channel:
        stub = pb_grpc.ExternalScalerStub(channel)
        assert (await stub.IsActive(ref("llama"))).result is True
    await server.stop(None)


def test_committed_modules_match_the_proto(tmp_path: Path) -> None:
    """Regenerating from externalscaler.proto gives the same descriptor as the committed module."""
    code = protoc.main(
        [
            "protoc",
            f"-I{REPO}",
            f"--python_out={tmp_path}",
            str(REPO / "metrics_adapter" / "externalscaler.proto"),
        ]
    )
    assert code == 0
    generated = (tmp_path / "metrics_adapter" / "externalscaler_pb2.py").read_text()
    committed = (REPO / "metrics_adapter" / "externalscaler_pb2.py").read_text()

    def serialized(source: str) -> str:
        return next(line for line in source.splitlines() if "AddSerializedFile" in line)

    assert serialized(generated) == serialized(committed)
    assert pb.DESCRIPTOR.services_by_name["ExternalScaler"].full_name == "externalscaler.ExternalScaler"
    assert pb.MetricValue.DESCRIPTOR.fields_by_name["metricValueFloat"].number == 3


async def test_unary_calls_are_timed_with_their_status(
    decisions: LatestDecisions, fixed_clock: Callable[[], float]
) -> None:
    telemetry = build_telemetry(decisions, fixed_clock)
    settings = KedaScalerSettings(max_age_seconds=60.0, clock=fixed_clock)
    server, port = build_keda_server(decisions, settings, "127.0.0.1:0", None, telemetry.request_seconds)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.ExternalScalerStub(channel)
            await stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref("llama")))
            await stub.IsActive(ref("llama"))
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref("stale")))
    finally:
        await server.stop(None)
    counts = {
        (sample.labels["route"], sample.labels["code"]): sample.value
        for family in text_string_to_metric_families(telemetry.render().decode())
        for sample in family.samples
        if sample.name == "autoscaler_adapter_request_seconds_count"
    }
    assert counts == {
        ("/externalscaler.ExternalScaler/GetMetrics", "OK"): 1,
        ("/externalscaler.ExternalScaler/IsActive", "OK"): 1,
        ("/externalscaler.ExternalScaler/GetMetrics", "UNAVAILABLE"): 1,
    }


async def test_a_port_in_use_is_not_shared(
    decisions: LatestDecisions, fixed_clock: Callable[[], float]
) -> None:
    first, port = await _start(decisions, fixed_clock)
    try:
        settings = KedaScalerSettings(max_age_seconds=60.0, clock=fixed_clock)
        # gRPC reports a port it could not bind as 0 or a RuntimeError, depending on the version.
        with contextlib.suppress(RuntimeError):
            _, second = build_keda_server(decisions, settings, f"127.0.0.1:{port}", None)
            assert second == 0, "a second server must not bind the same port"
    finally:
        await first.stop(0)


async def test_mutual_tls_admits_only_clients_signed_by_the_client_ca(
    decisions: LatestDecisions, fixed_clock: Callable[[], float], tls: TlsMaterial
) -> None:
    """`server.grpc_client_ca_file`: KEDA presents tlsClientCert/tlsClientKey from its
    TriggerAuthentication (deploy/examples/keda/triggerauthentication-mtls.yaml)."""
    settings = KedaScalerSettings(max_age_seconds=60.0, clock=fixed_clock)
    server, port = build_keda_server(
        decisions,
        settings,
        "127.0.0.1:0",
        (tls.server.cert_file.read_bytes(), tls.server.key_file.read_bytes()),
        client_ca=tls.front_proxy_ca.cert_bytes,
    )
    await server.start()

    async def ask(client: Pem | None) -> bool:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=tls.serving_ca.cert_bytes,
            private_key=None if client is None else client.key_file.read_bytes(),
            certificate_chain=None if client is None else client.cert_bytes,
        )
        async with grpc.aio.secure_channel(f"localhost:{port}", credentials) as channel:
            try:
                await pb_grpc.ExternalScalerStub(channel).IsActive(ref("llama"), timeout=5)
            except grpc.aio.AioRpcError as error:
                assert error.code() is grpc.StatusCode.UNAVAILABLE, error
                return False
            return True

    try:
        assert await ask(tls.front_proxy_client)
        assert not await ask(None), "no client certificate"
        assert not await ask(tls.rogue_client), "a certificate from another CA"
    finally:
        await server.stop(None)

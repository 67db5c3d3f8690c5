"""KEDA external scaler (grpc.aio) answering from the latest published decisions.

Trigger metadata: `workload` names the workload (defaults to the ScaledObject's name) in the
ScaledObject's namespace. GetMetricSpec asks for `desired_replicas` with a target of 1, so KEDA's
default AverageValue HPA computes ceil(7 / 1) = 7 replicas for a decision of 7.
Missing or stale decisions are a gRPC UNAVAILABLE error, never a 0: KEDA then keeps the current
scale (or applies its configured fallback) instead of scaling down.
Every replica of the sidecar reads the same published decisions and keeps no per-caller state, so
KEDA's round-robin over replicas gets the same answers from each.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from prometheus_client import Histogram

from metrics_adapter import externalscaler_pb2 as pb
from metrics_adapter import externalscaler_pb2_grpc as pb_grpc
from metrics_adapter.published_metrics import DecisionSource, is_fresh, wants_active
from sidecar.latest_decisions import PublishedDecision
from sidecar.listeners import ConnectionLimits

log = logging.getLogger(__name__)

DESIRED_REPLICAS_METRIC = "desired_replicas"


@dataclass(frozen=True, slots=True)
class KedaScalerSettings:
    """`stream_interval_seconds`: how often StreamIsActive re-reads the decision (KEDA acts on a `true`
    push at once, so this bounds how late a pre-warm can start)."""

    max_age_seconds: float
    clock: Callable[[], float] = time.time
    stream_interval_seconds: float = 1.0


class _NoDecisionError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class PredictiveExternalScaler(pb_grpc.ExternalScalerServicer):
    def __init__(self, source: DecisionSource, settings: KedaScalerSettings) -> None:
        self._source = source
        self._settings = settings

    def _decision(self, ref: pb.ScaledObjectRef) -> PublishedDecision:
        """The fresh decision for `ref`; raises _NoDecisionError saying why there is none."""
        workload = ref.scalerMetadata.get("workload") or ref.name
        if not ref.namespace or not workload:
            raise _NoDecisionError(
                grpc.StatusCode.INVALID_ARGUMENT,
                "ScaledObjectRef needs a namespace and a name (or scalerMetadata.workload)",
            )
        item = self._source.get(ref.namespace, workload)
        if item is None:
            raise _NoDecisionError(
                grpc.StatusCode.UNAVAILABLE, f"no decision published yet for {ref.namespace}/{workload}"
            )
        if not is_fresh(item, self._settings.clock(), self._settings.max_age_seconds):
            raise _NoDecisionError(
                grpc.StatusCode.UNAVAILABLE, f"the newest decision for {ref.namespace}/{workload} is stale"
            )
        return item

    async def _require(self, ref: pb.ScaledObjectRef, context: grpc.aio.ServicerContext) -> PublishedDecision:
        try:
            return self._decision(ref)
        except _NoDecisionError as missing:
            await context.abort(missing.code, missing.message)
            raise  # abort() always raises; this line only tells the type checker

    async def IsActive(  # noqa: N802 - gRPC method names come from the proto
        self, request: pb.ScaledObjectRef, context: grpc.aio.ServicerContext
    ) -> pb.IsActiveResponse:
        item = await self._require(request, context)
        return pb.IsActiveResponse(result=wants_active(item))

    async def StreamIsActive(  # noqa: N802
        self, request: pb.ScaledObjectRef, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.IsActiveResponse]:
        last: bool | None = None
        while True:
            try:
                item = self._decision(request)
            except _NoDecisionError as missing:
                if missing.code is grpc.StatusCode.INVALID_ARGUMENT:
                    await context.abort(missing.code, missing.message)
                # Missing data pushes nothing: KEDA ignores `false` pushes and must not see a fake one.
                item = None
            if item is not None and (active := wants_active(item)) != last:
                yield pb.IsActiveResponse(result=active)
                last = active
            await asyncio.sleep(self._settings.stream_interval_seconds)

    async def GetMetricSpec(  # noqa: N802
        self, request: pb.ScaledObjectRef, context: grpc.aio.ServicerContext
    ) -> pb.GetMetricSpecResponse:
        return pb.GetMetricSpecResponse(
            metricSpecs=[pb.MetricSpec(metricName=DESIRED_REPLICAS_METRIC, targetSize=1, targetSizeFloat=1.0)]
        )

    async def GetMetrics(  # noqa: N802
        self, request: pb.GetMetricsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetMetricsResponse:
        # KEDA asks for the name GetMetricSpec gave, its "sN-" prefix stripped; any other name
        # would get the replica count under a label that says it is something else.
        if request.metricName not in ("", DESIRED_REPLICAS_METRIC):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"unknown metricName {request.metricName!r}; this scaler serves {DESIRED_REPLICAS_METRIC!r}",
            )
        item = await self._require(request.scaledObjectRef, context)
        replicas = item.decision.replicas
        return pb.GetMetricsResponse(
            metricValues=[
                pb.MetricValue(
                    metricName=DESIRED_REPLICAS_METRIC,
                    metricValue=replicas,
                    metricValueFloat=float(replicas),
                )
            ]
        )


class _Interceptor(grpc.aio.ServerInterceptor):
    """Parses each request itself, so a malformed one is INVALID_ARGUMENT saying what it is not
    (gRPC's own parse answered UNKNOWN naming a Python exception class, and logged an ERROR with a
    traceback per message), logged at debug in one line. Times unary calls into the adapter's
    request histogram when given one (route = full method, code = gRPC status name);
    StreamIsActive is left out of it: a stream lives as long as KEDA keeps it open, so its
    duration says nothing about how fast we answer."""

    def __init__(self, request_seconds: Histogram | None) -> None:
        self._request_seconds = request_seconds

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        method: str = handler_call_details.method
        parse = handler.request_deserializer
        if handler.unary_unary is not None:
            unary = handler.unary_unary
            histogram = self._request_seconds

            async def answer(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
                started = time.perf_counter()
                code = "UNKNOWN"
                try:
                    response = await unary(await _parsed(raw, parse, method, context), context)
                    code = "OK"
                    return response
                except grpc.aio.AbortError:
                    # abort() has set the status on the context before raising.
                    aborted = context.code()
                    code = aborted.name if isinstance(aborted, grpc.StatusCode) else "UNKNOWN"
                    raise
                finally:
                    if histogram is not None:
                        histogram.labels(route=method, code=code).observe(time.perf_counter() - started)

            return grpc.unary_unary_rpc_method_handler(
                answer, request_deserializer=None, response_serializer=handler.response_serializer
            )
        if handler.unary_stream is not None:
            stream = handler.unary_stream

            async def push(raw: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                async for response in stream(await _parsed(raw, parse, method, context), context):
                    yield response

            return grpc.unary_stream_rpc_method_handler(
                push, request_deserializer=None, response_serializer=handler.response_serializer
            )
        return handler


async def _parsed(
    raw: bytes, parse: Callable[[bytes], Any], method: str, context: grpc.aio.ServicerContext
) -> Any:
    try:
        return parse(raw)
    except DecodeError as error:
        log.debug("malformed gRPC request", extra={"method": method, "error": str(error)})
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"the request to {method} is not a valid protobuf message of its type "
            "(externalscaler.proto): check the client's proto version",
        )
        raise  # abort() always raises


def _limit_options(limits: ConnectionLimits | None) -> list[tuple[str, int]]:
    if limits is None:
        return []
    idle_ms = max(1, round(limits.idle_timeout_seconds * 1000))
    return [
        ("grpc.max_allowed_incoming_connections", limits.max_connections),
        ("grpc.server_handshake_timeout_ms", idle_ms),
        # A StreamIsActive stream is a call, so a connection carrying one is never idle.
        ("grpc.max_connection_idle_ms", idle_ms),
    ]


def build_keda_server(
    source: DecisionSource,
    settings: KedaScalerSettings,
    address: str,
    tls: tuple[bytes, bytes] | None = None,
    request_seconds: Histogram | None = None,
    limits: ConnectionLimits | None = None,
    client_ca: bytes | None = None,
) -> tuple[grpc.aio.Server, int]:
    """A grpc.aio server (not started) and its bound port; `tls` is (certificate PEM, key PEM).

    `request_seconds`, if given, is a Histogram with labels (route, code) (sidecar.telemetry's),
    observed for every unary call. `limits` (sidecar.listeners) caps connections and closes one
    that finishes no handshake, or sits idle, for its idle timeout. `client_ca` (PEM, with `tls`)
    makes it mutual TLS: only a client presenting a certificate signed by it (KEDA, through a
    TriggerAuthentication's tlsClientCert/tlsClientKey) gets past the handshake. Start with
    `await server.start()`, stop with `await server.stop(grace_seconds)`.
    """
    server = grpc.aio.server(
        interceptors=[_Interceptor(request_seconds)],
        # gRPC shares a port already in use by default: a second sidecar would then answer half
        # of KEDA's calls from its own decisions. Binding must fail instead.
        options=[("grpc.so_reuseport", 0), *_limit_options(limits)],
    )
    pb_grpc.add_ExternalScalerServicer_to_server(PredictiveExternalScaler(source, settings), server)
    if tls is None:
        if client_ca is not None:
            raise ValueError("client certificates need TLS: give the serving certificate and key too")
        port = server.add_insecure_port(address)
    else:
        credentials = grpc.ssl_server_credentials(
            [(tls[1], tls[0])], root_certificates=client_ca, require_client_auth=client_ca is not None
        )
        port = server.add_secure_port(address, credentials)
    return server, port

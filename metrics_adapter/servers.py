"""Start and stop every inbound server the adapter owns, from one config: the HTTPS external metrics
API (with the KEDA metrics-api route), the KEDA gRPC external scaler, and the plain-HTTP /metrics.

This is the entry point the composition root (sidecar/main.py) calls; it owns sockets, so it is
shell code. Port 0 picks a free port; the bound ports are reported back on AdapterServers.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from aiohttp import web
from kubernetes_asyncio import client as k8s

from metrics_adapter.authentication import FrontProxyVerifier, KubernetesAccessReviewer
from metrics_adapter.external_metrics_api import (
    ExternalMetricsSettings,
    build_external_metrics_app,
    build_server_ssl_context,
)
from metrics_adapter.keda_scaler import KedaScalerSettings, build_keda_server
from metrics_adapter.published_metrics import DecisionSource
from sidecar.telemetry import Telemetry, build_metrics_app


@dataclass(frozen=True, slots=True)
class AdapterConfig:
    """Ports (None disables a server), TLS files, authentication and freshness.

    `requestheader_ca_file` / `requestheader_allowed_names` come from the ConfigMap
    kube-system/extension-apiserver-authentication; without a CA no front-proxy identity is trusted.
    `max_age_seconds`: decisions older than this are answered as unavailable, never served.
    """

    tls_cert_file: Path
    tls_key_file: Path
    host: str = "0.0.0.0"
    https_port: int | None = 6443
    grpc_port: int | None = 9090
    metrics_port: int | None = 9102
    grpc_tls: bool = False
    requestheader_ca_file: Path | None = None
    requestheader_allowed_names: tuple[str, ...] = ("front-proxy-client",)
    max_age_seconds: float = 60.0
    review_cache_seconds: float = 10.0
    stream_interval_seconds: float = 1.0
    allow_unauthenticated: bool = False
    clock: Callable[[], float] = time.time


@dataclass
class AdapterServers:
    """Running servers and their bound ports; `stop()` closes all of them."""

    https_port: int | None = None
    grpc_port: int | None = None
    metrics_port: int | None = None
    _runners: list[web.AppRunner] = field(default_factory=list)
    _grpc: grpc.aio.Server | None = None

    async def stop(self, grace_seconds: float = 1.0) -> None:
        if self._grpc is not None:
            await self._grpc.stop(grace_seconds)
        for runner in self._runners:
            await runner.cleanup()


async def _start_site(
    app: web.Application, host: str, port: int, ssl_context: ssl.SSLContext | None
) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    await site.start()
    return runner, runner.addresses[0][1]


async def start_adapter_servers(
    source: DecisionSource,
    config: AdapterConfig,
    telemetry: Telemetry | None = None,
    api_client: k8s.ApiClient | None = None,
) -> AdapterServers:
    """Start the configured servers. `api_client` (kubernetes-asyncio, owned and closed by the caller)
    enables bearer tokens via TokenReview and authorization via SubjectAccessReview."""
    servers = AdapterServers()
    try:
        if config.https_port is not None:
            front_proxy = None
            if config.requestheader_ca_file is not None:
                # Certificate validity is judged on the wall clock, as the TLS handshake itself does.
                front_proxy = FrontProxyVerifier(
                    config.requestheader_ca_file.read_bytes(), config.requestheader_allowed_names
                )
            settings = ExternalMetricsSettings(
                max_age_seconds=config.max_age_seconds,
                clock=config.clock,
                front_proxy=front_proxy,
                reviewer=None
                if api_client is None
                else KubernetesAccessReviewer(api_client, config.clock, config.review_cache_seconds),
                allow_unauthenticated=config.allow_unauthenticated,
            )
            app = build_external_metrics_app(
                source, settings, None if telemetry is None else telemetry.request_seconds
            )
            ssl_context = build_server_ssl_context(
                str(config.tls_cert_file),
                str(config.tls_key_file),
                None if config.requestheader_ca_file is None else str(config.requestheader_ca_file),
            )
            runner, servers.https_port = await _start_site(app, config.host, config.https_port, ssl_context)
            servers._runners.append(runner)
        if config.metrics_port is not None and telemetry is not None:
            runner, servers.metrics_port = await _start_site(
                build_metrics_app(telemetry), config.host, config.metrics_port, None
            )
            servers._runners.append(runner)
        if config.grpc_port is not None:
            tls = (
                (config.tls_cert_file.read_bytes(), config.tls_key_file.read_bytes())
                if config.grpc_tls
                else None
            )
            keda_settings = KedaScalerSettings(
                max_age_seconds=config.max_age_seconds,
                clock=config.clock,
                stream_interval_seconds=config.stream_interval_seconds,
            )
            server, servers.grpc_port = build_keda_server(
                source, keda_settings, f"{config.host}:{config.grpc_port}", tls
            )
            await server.start()
            servers._grpc = server
    except BaseException:
        await servers.stop(0)
        raise
    return servers

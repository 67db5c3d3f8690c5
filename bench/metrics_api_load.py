"""Sustained GET load on the external metrics endpoint over TLS on loopback, from a second process.

The server runs in a child process (`--serve`) with 200 published workloads, front-proxy client
certificate authentication (X-Remote-Group system:masters, so no SubjectAccessReview round trip), and
the same application the sidecar serves. This process paces GETs at a fixed rate (default 1,000/s)
over keep-alive TLS connections with an aiohttp client and records each request's latency from its
scheduled start (so a stalled server cannot hide queueing: no coordinated omission).

Rows: the metric GET, and as a baseline measured in the same run at the same rate, /healthz (TLS and
aiohttp cost without our handler); the ratio shows what selector parsing, authentication and JSON
cost. Each row is the median over --runs runs. RSS of the server process is read from /proc before
the first and after the last run. Targets on 2 cores: p99 under 5 ms at 1,000 req/s, RSS growth under
10 MB.

Usage: .venv/bin/python bench/metrics_api_load.py [--seconds 60] [--rate 1000] [--runs 1]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import math
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

PATH = "/apis/external.metrics.k8s.io/v1beta1/namespaces/ml/desired_replicas"
SELECTOR = "model in (llama-3),workload=w-0042"
HEADERS = {"X-Remote-User": "system:kube-aggregator", "X-Remote-Group": "system:masters"}


def _certificate(directory: Path, stem: str, name: str, issuer: tuple | None, ca: bool, san: bool) -> tuple:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject if issuer is None else issuer[0].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False
        )
    certificate = builder.sign(key if issuer is None else issuer[1], hashes.SHA256())
    (directory / f"{stem}.crt").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (directory / f"{stem}.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return certificate, key


def write_certificates(directory: Path) -> None:
    serving_ca = _certificate(directory, "serving-ca", "serving-ca", None, ca=True, san=False)
    _certificate(directory, "server", "localhost", serving_ca, ca=False, san=True)
    proxy_ca = _certificate(directory, "proxy-ca", "front-proxy-ca", None, ca=True, san=False)
    _certificate(directory, "proxy-client", "front-proxy-client", proxy_ca, ca=False, san=False)


def serve(directory: Path, port: int) -> None:
    """Child process: publish 200 workloads and serve the external metrics API until killed."""
    from aiohttp import web

    from autoscaler import Decision, Observations, Reason
    from metrics_adapter.authentication import FrontProxyVerifier
    from metrics_adapter.external_metrics_api import (
        ExternalMetricsSettings,
        build_external_metrics_app,
        build_server_ssl_context,
    )
    from sidecar.latest_decisions import LatestDecisions, PublishedDecision
    from sidecar.telemetry import build_metrics_app, build_telemetry

    decisions = LatestDecisions()
    now = time.time()
    for index in range(200):
        workload = f"w-{index:04d}"
        decisions.publish(
            PublishedDecision(
                namespace="ml",
                workload=workload,
                decision=Decision(at=now, replicas=index % 17 + 1, reason=Reason.FORECAST, forecast_rps=12.5),
                observations=Observations(at=now, current_replicas=3),
                published_at=now,
                labels={"model": "llama-3" if index % 2 == 0 else "mistral"},
            )
        )
    telemetry = build_telemetry(decisions, time.time)
    settings = ExternalMetricsSettings(
        # The bench publishes once; keep the decisions fresh for the whole run.
        max_age_seconds=86_400.0,
        front_proxy=FrontProxyVerifier((directory / "proxy-ca.crt").read_bytes(), ["front-proxy-client"]),
    )
    app = build_external_metrics_app(decisions, settings, telemetry.request_seconds)
    context = build_server_ssl_context(
        str(directory / "server.crt"), str(directory / "server.key"), str(directory / "proxy-ca.crt")
    )

    async def run() -> None:
        # The server's own request histogram on port+1: handler time inside the server, which the
        # client's view (and its share of the 2 cores) cannot distort.
        metrics_runner = web.AppRunner(build_metrics_app(telemetry), access_log=None)
        await metrics_runner.setup()
        await web.TCPSite(metrics_runner, "127.0.0.1", port + 1).start()
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
        await asyncio.Event().wait()

    asyncio.run(run())


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def load(
    url: str, params: dict[str, str], seconds: float, rate: float, context: ssl.SSLContext
) -> dict:
    """Issue `rate` GETs per second for `seconds`; latency counts from each request's scheduled time."""
    latencies: list[float] = []
    service: list[float] = []
    failures = 0
    connector = aiohttp.TCPConnector(limit=64, ssl=context)
    async with aiohttp.ClientSession(connector=connector, headers=HEADERS) as session:

        async def one(scheduled: float) -> None:
            nonlocal failures
            sent = time.perf_counter()
            try:
                async with session.get(url, params=params) as response:
                    await response.read()
                    if response.status != 200:
                        failures += 1
            except aiohttp.ClientError:
                failures += 1
            done = time.perf_counter()
            latencies.append(done - scheduled)
            service.append(done - sent)

        started = time.perf_counter()
        total = int(seconds * rate)
        tasks = []
        for index in range(total):
            scheduled = started + index / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(scheduled)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
    latencies.sort()
    service.sort()
    return {
        "service_p99_ms": 1000 * service[int(len(service) * 0.99) - 1],
        "rps": len(latencies) / elapsed,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99) - 1],
        "max_ms": 1000 * latencies[-1],
        "failures": failures,
    }


async def server_side_p99(base: str) -> dict[str, tuple[float, float]]:
    """Per route: request count and the histogram bucket bound holding the 99th percentile."""
    port = int(base.rsplit(":", 1)[1]) + 1
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        text = await response.text()
    buckets: dict[str, dict[float, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "autoscaler_adapter_request_seconds_bucket" and sample.labels["code"] == "200":
                per_route = buckets.setdefault(sample.labels["route"], {})
                bound = float(sample.labels["le"])
                per_route[bound] = per_route.get(bound, 0.0) + sample.value
    result = {}
    for route, cumulative in buckets.items():
        total = cumulative[math.inf]
        bound = next(b for b in sorted(cumulative) if cumulative[b] >= 0.99 * total)
        result[route] = (total, bound)
    return result


def median_row(rows: list[dict]) -> dict:
    return {key: statistics.median(row[key] for row in rows) for key in rows[0]}


async def measure(base: str, context: ssl.SSLContext, arguments: argparse.Namespace, pid: int) -> None:
    metric_url, health_url = base + PATH, base + "/healthz"
    # Warm up connections, TLS sessions and the allocator before reading RSS.
    await load(metric_url, {"labelSelector": SELECTOR}, 2.0, arguments.rate, context)
    rss_before = rss_mib(pid)
    metric_rows, health_rows = [], []
    for _ in range(arguments.runs):
        metric_rows.append(
            await load(metric_url, {"labelSelector": SELECTOR}, arguments.seconds, arguments.rate, context)
        )
        health_rows.append(await load(health_url, {}, arguments.baseline_seconds, arguments.rate, context))
    rss_after = rss_mib(pid)
    metric, health = median_row(metric_rows), median_row(health_rows)
    print(
        f"rate {arguments.rate:.0f}/s, {arguments.seconds:.0f} s per run "
        f"(baseline {arguments.baseline_seconds:.0f} s), "
        f"median of {arguments.runs} run(s), cpus {os.cpu_count()}"
    )
    print("latency from each request's scheduled start; 'send p99' from the moment the client sent it")
    print(f"{'endpoint':<28}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'send p99':>10}{'failed':>8}")
    for name, row in (("external metric GET", metric), ("/healthz (baseline)", health)):
        print(
            f"{name:<28}{row['rps']:>9.1f}{row['p50_ms']:>9.2f}{row['p99_ms']:>9.2f}{row['max_ms']:>9.1f}"
            f"{row['service_p99_ms']:>10.2f}{row['failures']:>8.0f}"
        )
    print(f"p99 ratio metric/baseline: {metric['p99_ms'] / health['p99_ms']:.2f}")
    for route, (count, bound) in (await server_side_p99(base)).items():
        print(
            f"server-side handler p99 <= {bound * 1000:g} ms (histogram bucket), "
            f"{count:.0f} requests: {route}"
        )
    print(
        f"server RSS: before {rss_before:.1f} MiB, after {rss_after:.1f} MiB, "
        f"growth {rss_after - rss_before:+.1f} MiB"
    )
    print(
        f"targets: p99 < 5 ms -> {'met' if metric['p99_ms'] < 5 else 'MISSED'}; "
        f"RSS growth < 10 MB -> {'met' if (rss_after - rss_before) * 1.048576 < 10 else 'MISSED'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--baseline-seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=18443)
    arguments = parser.parse_args()
    if arguments.serve is not None:
        serve(arguments.serve, arguments.port)
        return
    with tempfile.TemporaryDirectory() as temporary:
        directory = Path(temporary)
        write_certificates(directory)
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(directory), "--port", str(arguments.port)],
        )
        try:
            context = ssl.create_default_context(cafile=str(directory / "serving-ca.crt"))
            context.load_cert_chain(directory / "proxy-client.crt", directory / "proxy-client.key")
            base = f"https://localhost:{arguments.port}"
            for _ in range(100):
                try:
                    ssl_probe = ssl.create_default_context(cafile=str(directory / "serving-ca.crt"))
                    urllib.request.urlopen(base + "/healthz", context=ssl_probe, timeout=1).read()
                    break
                except OSError:
                    time.sleep(0.1)
            asyncio.run(measure(base, context, arguments, server.pid))
        finally:
            server.terminate()
            server.wait(timeout=10)


if __name__ == "__main__":
    main()

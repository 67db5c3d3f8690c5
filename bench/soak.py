"""Soak: the real sidecar process for 10 minutes under mixed good and bad traffic over TLS, with
Prometheus restarted twice and the settings file swapped every minute (valid and invalid in turn).

Set-up, all on loopback: Prometheus (the Debian binary) scrapes a load exporter in this process;
the sidecar (`python -m sidecar serve`) reads it, serves the external metrics API over TLS
(a self-signed certificate made here) and KEDA's gRPC scaler. Traffic, paced from this process:
- good: GET of `desired_replicas` for the workload, over kept-alive TLS connections (`--rate`/s);
- bad, one in four of the paced slots: a malformed labelSelector, an unknown metric, a raw request
  with a broken header line, a connection that sends half its headers and stops, a gRPC message
  that is not protobuf.
Settings: every 60 s the file is replaced, alternately with a valid edit (max_replicas) and with
an invalid file (an alias bomb, a 5 MB file, a bad value, in turn).

Measured: 5xx answers to good requests (target 0); ticks: decisions the sidecar counted
(`autoscaler_decisions_total`) against the ticks the run had room for (target: none missed); RSS
of the sidecar process from /proc, sampled every `--sample-seconds` and printed as a curve.

RSS is reported twice. Total: from the idle, ready sidecar to the end. After warm-up: from the
end of the first `--warmup-seconds` of the same traffic to the end, over the `--seconds` that
follow; the 10 MB target applies to this one. The first minute of traffic makes one-off
allocations that do not recur (buffers for the connections clients keep open, allocator arenas
sized for the peak in flight: the warm-up figure before it was measured from an idle sidecar);
memory that grows with requests, connections, settings swaps or Prometheus restarts keeps growing
after it, which is what the target is for, and the curve shows whether what remains flattens.

Usage: .venv/bin/python bench/soak.py [--seconds 600] [--warmup-seconds 60] [--rate 40]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import ipaddress
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp
import grpc
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.sidecar.hostile_settings import alias_bomb, oversize  # noqa: E402

TICK_SECONDS = 5.0
METRIC = "/apis/external.metrics.k8s.io/v1beta1/namespaces/ml/desired_replicas"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "soak")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    cert, key_file = directory / "tls.crt", directory / "tls.key"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert, key_file


class Prometheus:
    def __init__(self, directory: Path, target: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data = directory / "prometheus-data"
        self.config = directory / "prometheus.yml"
        self.config.write_text(
            "global: {scrape_interval: 1s}\n"
            f"scrape_configs: [{{job_name: load, static_configs: [{{targets: ['{target}']}}]}}]\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("prometheus")
        assert binary, "prometheus is not installed"
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={self.config}",
                f"--storage.tsdb.path={self.data}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=error",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=1) as ready:
                    if ready.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("prometheus did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=20)
            self.process = None


def settings_text(
    prometheus_url: str, cert: Path, key: Path, ports: dict[str, int], max_replicas: int
) -> str:
    return f"""
log_format: json
prometheus: {{url: "{prometheus_url}", timeout_seconds: 1}}
loop: {{tick_seconds: {TICK_SECONDS:g}, history_seconds: 3600, history_step_seconds: 60}}
server: {{host: 127.0.0.1, health_port: {ports["health"]}, http_port: {ports["http"]},
          grpc_port: {ports["grpc"]}, tls_cert_file: "{cert}", tls_key_file: "{key}",
          allow_unauthenticated: true}}
kubernetes: {{enabled: false}}
workloads:
  - name: llama
    namespace: ml
    queries: {{load: 'sum(load_rps{{workload="$workload"}})'}}
    replica_capacity_rps: 10
    max_replicas: {max_replicas}
    forecast: {{model: last_value}}
"""


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def decisions(health: str) -> float:
    with urllib.request.urlopen(health + "/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("autoscaler_decisions_total{")
    )


async def replace_file(path: Path, text: str) -> None:
    # As a ConfigMap update does: the new content appears at once, never half-written.
    staging = path.with_suffix(".new")
    await asyncio.to_thread(staging.write_text, text)
    os.replace(staging, path)


async def soak(seconds: float, warmup_seconds: float, rate: float, sample_seconds: float) -> int:
    directory = Path(tempfile.mkdtemp(prefix="soak-"))
    cert, key = self_signed(directory)
    exporter = web.Application()

    async def load(request: web.Request) -> web.Response:
        return web.Response(text='# TYPE load_rps gauge\nload_rps{workload="llama"} 42\n')

    exporter.router.add_get("/metrics", load)
    runner = web.AppRunner(exporter)
    await runner.setup()
    exporter_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", exporter_port).start()
    prometheus = Prometheus(directory, f"127.0.0.1:{exporter_port}")
    await asyncio.to_thread(prometheus.start)
    ports = {"health": free_port(), "http": free_port(), "grpc": free_port()}
    settings = directory / "settings.yaml"
    settings.write_text(settings_text(prometheus.url, cert, key, ports, 20))
    stderr = (directory / "sidecar.log").open("w")
    sidecar = subprocess.Popen(
        [sys.executable, "-m", "sidecar", "serve", "--config", str(settings)], cwd=REPO, stderr=stderr
    )
    health = f"http://127.0.0.1:{ports['health']}"
    base = f"https://127.0.0.1:{ports['http']}"
    client_tls = ssl.create_default_context(cafile=str(cert))
    counts = {"good": 0, "good_5xx": 0, "good_other": 0, "bad": 0, "bad_5xx": 0, "client_errors": 0}
    swaps = {"valid": 0, "invalid": 0}
    restarts = 0
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(health + "/readyz", timeout=1) as ready:
                    if ready.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or sidecar.poll() is not None:
                raise RuntimeError(f"sidecar did not become ready; see {directory / 'sidecar.log'}")
            await asyncio.sleep(0.2)
        rss_idle = rss_kib(sidecar.pid)
        decisions_start = await asyncio.to_thread(decisions, health)
        started = time.monotonic()
        total = warmup_seconds + seconds
        end = started + total
        samples: list[tuple[float, int]] = [(0.0, rss_idle)]
        rss_warm: int | None = None

        async def sample_rss() -> None:
            nonlocal rss_warm
            while (left := end - time.monotonic()) > 0:
                until_warm = started + warmup_seconds - time.monotonic()
                nap = min(sample_seconds, left) if rss_warm is not None else min(sample_seconds, until_warm)
                await asyncio.sleep(max(0.0, nap))
                samples.append((time.monotonic() - started, rss_kib(sidecar.pid)))
                if rss_warm is None and time.monotonic() >= started + warmup_seconds:
                    rss_warm = samples[-1][1]

        invalid = [alias_bomb(), oversize(5), "workloads: [{name: llama, replica_capacity_rps: -1}]\n"]

        async def churn() -> None:
            nonlocal restarts
            minute = 0
            restart_at = {warmup_seconds + seconds / 3, warmup_seconds + 2 * seconds / 3}
            while time.monotonic() < end:
                await asyncio.sleep(min(60.0, max(0.0, end - time.monotonic())))
                minute += 1
                if time.monotonic() >= end:
                    break
                if minute % 2:
                    swaps["invalid"] += 1
                    await replace_file(settings, invalid[(minute // 2) % len(invalid)])
                else:
                    swaps["valid"] += 1
                    text = settings_text(prometheus.url, cert, key, ports, 20 + minute)
                    await replace_file(settings, text)
                elapsed = time.monotonic() - started
                for at in sorted(restart_at):
                    if elapsed >= at:
                        restart_at.discard(at)
                        restarts += 1
                        await asyncio.to_thread(prometheus.stop)
                        await asyncio.sleep(10)
                        await asyncio.to_thread(prometheus.start)

        async def bad(session: aiohttp.ClientSession, index: int) -> None:
            kind = index % 5
            if kind == 0:
                async with session.get(base + METRIC, params={"labelSelector": "workload in (("}) as r:
                    counts["bad_5xx"] += r.status >= 500
            elif kind == 1:
                async with session.get(base + METRIC.replace("desired_replicas", "nope")) as r:
                    counts["bad_5xx"] += r.status >= 500
            elif kind in (2, 3):
                reader, writer = await asyncio.open_connection("127.0.0.1", ports["http"], ssl=client_tls)
                if kind == 2:
                    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nno colon\r\n\r\n")
                    answer = await reader.read(64)
                    counts["bad_5xx"] += answer[9:10] == b"5"
                else:
                    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and then nothing
                writer.close()
            else:
                async with grpc.aio.secure_channel(
                    f"127.0.0.1:{ports['grpc']}", grpc.ssl_channel_credentials(cert.read_bytes())
                ) as channel:
                    try:
                        await channel.unary_unary("/externalscaler.ExternalScaler/GetMetrics")(b"\xff\xff")
                    except grpc.aio.AioRpcError as error:
                        counts["bad_5xx"] += error.code() not in (grpc.StatusCode.INVALID_ARGUMENT,)
            counts["bad"] += 1

        async def good(session: aiohttp.ClientSession) -> None:
            async with session.get(base + METRIC, params={"labelSelector": "workload=llama"}) as r:
                counts["good"] += 1
                if r.status >= 500:
                    counts["good_5xx"] += 1
                elif r.status != 200:
                    counts["good_other"] += 1

        async def guarded(call: asyncio.Future | object) -> None:
            try:
                await call  # type: ignore[misc]
            except (TimeoutError, OSError, aiohttp.ClientError, ssl.SSLError):
                counts["client_errors"] += 1

        churner = asyncio.create_task(churn())
        sampler = asyncio.create_task(sample_rss())
        pending: set[asyncio.Task[None]] = set()
        connector = aiohttp.TCPConnector(ssl=client_tls, limit=20)
        async with aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=10)
        ) as session:
            slot = 0
            while (now := time.monotonic()) < end:
                slot += 1
                call = bad(session, slot // 4) if slot % 4 == 0 else good(session)
                task = asyncio.create_task(guarded(call))
                pending.add(task)
                task.add_done_callback(pending.discard)
                await asyncio.sleep(max(0.0, started + slot / rate - now))
            await asyncio.gather(*pending)
        await churner
        await sampler
        elapsed = time.monotonic() - started
        decisions_end = await asyncio.to_thread(decisions, health)
        rss_end = rss_kib(sidecar.pid)
    finally:
        sidecar.terminate()
        try:
            sidecar.wait(timeout=30)
        except subprocess.TimeoutExpired:
            sidecar.kill()
        stderr.close()
        prometheus.stop()
        await runner.cleanup()
    log = (directory / "sidecar.log").read_text().splitlines()
    messages = [json.loads(line).get("message", "") for line in log if line.startswith("{")]
    rejected = sum("new settings rejected" in m for m in messages)
    reloaded = sum(m == "settings reloaded" for m in messages)
    errors = sum('"level": "ERROR"' in line or '"levelname": "ERROR"' in line for line in log)
    expected_ticks = int(elapsed // TICK_SECONDS)
    counted = int(decisions_end - decisions_start)
    missed = max(0, expected_ticks - counted - 1)  # the tick in flight at either reading
    assert rss_warm is not None, "the run ended inside its warm-up"
    growth_mib = (rss_end - rss_warm) / 1024
    rows = [
        ("traffic (s): warm-up + measured", f"{warmup_seconds:.0f} + {elapsed - warmup_seconds:.0f}", ""),
        ("good requests (TLS)", f"{counts['good']}", ""),
        ("good requests answered 5xx", f"{counts['good_5xx']}", "0"),
        ("good requests answered 4xx", f"{counts['good_other']}", ""),
        ("bad requests / connections", f"{counts['bad']}", ""),
        ("bad requests answered 5xx", f"{counts['bad_5xx']}", "0"),
        ("client-side errors (closed, reset)", f"{counts['client_errors']}", ""),
        ("settings swaps valid / invalid", f"{swaps['valid']} / {swaps['invalid']}", ""),
        ("reloads applied / rejected (log)", f"{reloaded} / {rejected}", "= swaps"),
        ("Prometheus restarts", f"{restarts}", "2"),
        ("ticks with room / decisions counted", f"{expected_ticks} / {counted}", ""),
        ("missed ticks", f"{missed}", "0"),
        ("sidecar ERROR log lines", f"{errors}", ""),
        (
            "RSS idle / after warm-up / end (MiB)",
            f"{rss_idle / 1024:.1f} / {rss_warm / 1024:.1f} / {rss_end / 1024:.1f}",
            "",
        ),
        ("RSS growth, total (MiB)", f"{(rss_end - rss_idle) / 1024:+.1f}", ""),
        ("RSS growth after warm-up (MiB)", f"{growth_mib:+.1f}", "< 10"),
    ]
    width = max(len(r[0]) for r in rows)
    value_width = max(len(r[1]) for r in rows)
    print(f"{'measure'.ljust(width)} | {'value'.ljust(value_width)} | target")
    print(f"{'-' * width}-|-{'-' * value_width}-|-------")
    for name, value, target in rows:
        print(f"{name.ljust(width)} | {value.ljust(value_width)} | {target}")
    print()
    print("t (s) | RSS (MiB) | since idle (MiB) | since warm-up (MiB)")
    print("------|-----------|------------------|--------------------")
    for at, kib in samples:
        after = f"{(kib - rss_warm) / 1024:+19.1f}" if at >= warmup_seconds - 1 else " " * 19
        print(f"{at:5.0f} | {kib / 1024:9.1f} | {(kib - rss_idle) / 1024:+16.1f} | {after}")
    shutil.rmtree(directory, ignore_errors=True)
    ok = counts["good_5xx"] == 0 and missed == 0 and growth_mib < 10 and counts["bad_5xx"] == 0
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="measured, after the warm-up")
    parser.add_argument("--warmup-seconds", type=float, default=60.0, help="traffic before RSS is measured")
    parser.add_argument("--rate", type=float, default=40.0, help="paced requests per second")
    parser.add_argument("--sample-seconds", type=float, default=30.0, help="RSS sampling interval")
    arguments = parser.parse_args()
    return asyncio.run(
        soak(arguments.seconds, arguments.warmup_seconds, arguments.rate, arguments.sample_seconds)
    )


if __name__ == "__main__":
    sys.exit(main())

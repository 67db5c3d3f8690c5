"""TLS material generated per test session with `cryptography`, and a helper to serve an aiohttp
application over HTTPS on a free loopback port.

Three authorities: `serving` signs the server certificate (SAN localhost / 127.0.0.1), `front_proxy`
is the requestheader CA that signs the aggregator's client certificate (CN front-proxy-client) and
one with a CN outside the allowed names, and `rogue` is an unrelated CA whose client certificate
claims the allowed CN.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from autoscaler import Decision, Observations, Reason
from sidecar.latest_decisions import PublishedDecision

NOW = 1_800_000_000.0


@dataclass(frozen=True)
class Pem:
    cert_file: Path
    key_file: Path

    @property
    def cert_bytes(self) -> bytes:
        return self.cert_file.read_bytes()


@dataclass(frozen=True)
class TlsMaterial:
    serving_ca: Pem
    server: Pem
    front_proxy_ca: Pem
    front_proxy_client: Pem
    front_proxy_wrong_cn: Pem
    rogue_client: Pem


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _issue(
    directory: Path,
    stem: str,
    common_name: str,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    *,
    is_ca: bool = False,
    server: bool = False,
) -> tuple[Pem, x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    issuer_name = _name(common_name) if issuer is None else issuer[0].subject
    signing_key = key if issuer is None else issuer[1]
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    )
    if is_ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        ).add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    else:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    certificate = builder.sign(signing_key, hashes.SHA256())
    cert_file = directory / f"{stem}.crt"
    key_file = directory / f"{stem}.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return Pem(cert_file, key_file), certificate, key


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    directory = tmp_path_factory.mktemp("tls")
    serving_ca, serving_cert, serving_key = _issue(directory, "serving-ca", "serving-ca", None, is_ca=True)
    server, _, _ = _issue(directory, "server", "localhost", (serving_cert, serving_key), server=True)
    proxy_ca, proxy_cert, proxy_key = _issue(directory, "front-proxy-ca", "front-proxy-ca", None, is_ca=True)
    proxy_client, _, _ = _issue(
        directory, "front-proxy-client", "front-proxy-client", (proxy_cert, proxy_key)
    )
    wrong_cn, _, _ = _issue(directory, "wrong-cn", "some-other-client", (proxy_cert, proxy_key))
    _, rogue_cert, rogue_key = _issue(directory, "rogue-ca", "front-proxy-ca", None, is_ca=True)
    rogue_client, _, _ = _issue(directory, "rogue-client", "front-proxy-client", (rogue_cert, rogue_key))
    return TlsMaterial(serving_ca, server, proxy_ca, proxy_client, wrong_cn, rogue_client)


def client_ssl_context(tls: TlsMaterial, client: Pem | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(tls.serving_ca.cert_file))
    if client is not None:
        context.load_cert_chain(client.cert_file, client.key_file)
    return context


@asynccontextmanager
async def serve(app: web.Application, ssl_context: ssl.SSLContext | None) -> AsyncIterator[str]:
    """Run `app` on 127.0.0.1 with a free port; yields the base URL. A handler still running when
    its client hangs up is cancelled (as a fake that never answers is), so cleanup does not wait
    out aiohttp's 60 s shutdown for it."""
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = runner.addresses[0][1]
    scheme = "https" if ssl_context is not None else "http"
    try:
        yield f"{scheme}://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def published(
    workload: str,
    *,
    namespace: str = "ml",
    replicas: int = 3,
    forecast_rps: float | None = 42.5,
    published_at: float = NOW - 5,
    labels: dict[str, str] | None = None,
) -> PublishedDecision:
    decision = Decision(at=published_at, replicas=replicas, reason=Reason.FORECAST, forecast_rps=forecast_rps)
    return PublishedDecision(
        namespace=namespace,
        workload=workload,
        decision=decision,
        observations=Observations(at=published_at, current_replicas=replicas),
        published_at=published_at,
        labels={"namespace": namespace, "workload": workload, **(labels or {})},
    )


@pytest.fixture
def fixed_clock() -> Callable[[], float]:
    return lambda: NOW

"""Who is calling, and may they read this metric: front-proxy certificates, TokenReview, SubjectAccessReview.

Order (as a delegating Kubernetes API server does it):
1. A TLS client certificate signed directly by the requestheader CA whose CN is in the allowed names
   makes X-Remote-User / X-Remote-Group trustworthy. Any other certificate never does, so a client
   with a certificate from another CA cannot impersonate a user by sending the headers.
2. Otherwise a bearer token is checked with a TokenReview.
3. Otherwise the caller is anonymous and is refused.
Authorization asks a SubjectAccessReview for verb `list` on resource = metric name in the request's
namespace; members of system:masters skip it. Both reviews are cached briefly (10 s, like kube-apiserver's
delegating filters) so an HPA polling every 15 s costs at most one review per poll; each cache holds at
most 4,096 entries (about 1 MB), so distinct tokens cannot grow it without bound.

A review that cannot be done (API server down, silent past REVIEW_TIMEOUT_SECONDS, or answering an
error) is a ReviewUnavailableError: the request is refused (401 for a token, 403 for an access check, as
kube-apiserver's delegating filters answer), logged, and not cached, so the next poll tries again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import unquote

import aiohttp
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio.client.exceptions import ApiException
from multidict import CIMultiDictProxy

from sidecar.telemetry import CallMetrics, kubernetes_call

EXTERNAL_METRICS_GROUP = "external.metrics.k8s.io"
EXTERNAL_METRICS_VERSION = "v1beta1"
_MASTERS_GROUP = "system:masters"
_EXTRA_PREFIX = "x-remote-extra-"
# A TokenReview and a SubjectAccessReview run one after the other inside one request, which KEDA's
# metrics-api client gives 3 s by default: each review gets 1 s (see sidecar/budgets.py).
REVIEW_TIMEOUT_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class User:
    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


_REJECTED = User(name="")


class AuthenticationError(Exception):
    """The request carries no credential we can verify (401)."""


class ReviewUnavailableError(Exception):
    """A TokenReview or SubjectAccessReview could not be done; the message says why."""


class AccessReviewer(Protocol):
    """The Kubernetes API calls authentication needs; kubernetes-asyncio in production."""

    async def review_token(self, token: str) -> User | None: ...

    async def may_list(self, user: User, namespace: str, resource: str) -> bool: ...


class FrontProxyVerifier:
    """Decides whether a peer certificate may assert identities through X-Remote-* headers."""

    def __init__(
        self,
        requestheader_ca_pem: bytes,
        allowed_names: Sequence[str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._authorities = x509.load_pem_x509_certificates(requestheader_ca_pem)
        self._allowed_names = frozenset(allowed_names)
        self._clock = clock
        self._verified: dict[bytes, x509.Certificate] = {}

    def trusts(self, peer_certificate_der: bytes | None) -> bool:
        if peer_certificate_der is None:
            return False
        # The aggregator reuses one certificate on long-lived connections: remember the signature check
        # per DER blob instead of redoing an ECDSA/RSA verification on every request.
        certificate = self._verified.get(peer_certificate_der)
        if certificate is None:
            parsed = x509.load_der_x509_certificate(peer_certificate_der)
            if not any(self._issued_by(parsed, authority) for authority in self._authorities):
                return False
            if len(self._verified) >= 256:
                self._verified.clear()
            certificate = self._verified[peer_certificate_der] = parsed
        now = datetime.fromtimestamp(self._clock(), tz=UTC)
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            return False
        if not self._allowed_names:
            return True
        names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return any(name.value in self._allowed_names for name in names)

    @staticmethod
    def _issued_by(certificate: x509.Certificate, authority: x509.Certificate) -> bool:
        try:
            certificate.verify_directly_issued_by(authority)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True


def user_from_headers(headers: CIMultiDictProxy[str]) -> User | None:
    """Read the front-proxy identity headers; call only after FrontProxyVerifier.trusts()."""
    getall = headers.getall
    names = [value for value in getall("X-Remote-User", []) if value]
    if not names:
        return None
    groups = tuple(value for value in getall("X-Remote-Group", []) if value)
    uid = next((value for value in getall("X-Remote-Uid", []) if value), "")
    # Extra attributes (e.g. a token's scopes) must reach the SubjectAccessReview, or a user the
    # API server restricted by scope would be authorized here as if unrestricted. The aggregator
    # %-escapes each key after the prefix; like kube-apiserver we lowercase, then unescape.
    extra: dict[str, tuple[str, ...]] = {}
    for header, value in headers.items():
        if header.lower().startswith(_EXTRA_PREFIX):
            key = unquote(header[len(_EXTRA_PREFIX) :].lower())
            extra[key] = (*extra.get(key, ()), value)
    return User(name=names[0], groups=groups, uid=uid, extra=extra)


K = TypeVar("K")
V = TypeVar("V")


class _TtlCache(Generic[K, V]):
    """A small time-bounded memo; the clock is injected so tests and the loop agree on time."""

    def __init__(self, ttl_seconds: float, clock: Callable[[], float], max_entries: int = 4096) -> None:
        self._ttl_seconds = ttl_seconds
        self._clock = clock
        self._max_entries = max_entries
        self._entries: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] < self._clock():
            return None
        return entry[1]

    def put(self, key: K, value: V) -> None:
        if len(self._entries) >= self._max_entries:
            now = self._clock()
            self._entries = {k: v for k, v in self._entries.items() if v[0] >= now}
            if len(self._entries) >= self._max_entries:
                self._entries.clear()
        self._entries[key] = (self._clock() + self._ttl_seconds, value)


_DecisionKey = tuple[str, tuple[str, ...], str, tuple[tuple[str, tuple[str, ...]], ...], str, str]


class KubernetesAccessReviewer:
    """TokenReview and SubjectAccessReview through kubernetes-asyncio, each cached for `ttl_seconds`."""

    def __init__(
        self,
        api_client: k8s.ApiClient,
        clock: Callable[[], float],
        ttl_seconds: float = 10.0,
        metrics: CallMetrics | None = None,
    ) -> None:
        self._metrics = metrics
        self._authentication = k8s.AuthenticationV1Api(api_client)
        self._authorization = k8s.AuthorizationV1Api(api_client)
        self._tokens: _TtlCache[str, User] = _TtlCache(ttl_seconds, clock)
        self._decisions: _TtlCache[_DecisionKey, bool] = _TtlCache(ttl_seconds, clock)

    async def review_token(self, token: str) -> User | None:
        cached = self._tokens.get(token)
        if cached is not None:
            return None if cached is _REJECTED else cached
        review = await self._reviewed(
            "TokenReview",
            self._authentication.create_token_review(
                k8s.V1TokenReview(spec=k8s.V1TokenReviewSpec(token=token)),
                _request_timeout=REVIEW_TIMEOUT_SECONDS,
            ),
        )
        status = review.status
        user = None
        if status is not None and status.authenticated and status.user is not None:
            user = User(
                name=status.user.username or "",
                groups=tuple(status.user.groups or ()),
                uid=status.user.uid or "",
                extra={key: tuple(values) for key, values in (status.user.extra or {}).items()},
            )
        # Rejections are cached too, so a client retrying a bad token cannot flood the API server.
        self._tokens.put(token, user or _REJECTED)
        return user

    async def may_list(self, user: User, namespace: str, resource: str) -> bool:
        # Everything the review sends is in the key: the same name with other groups, uid or
        # extra (scopes) may get a different answer.
        extra = tuple(sorted(user.extra.items()))
        key = (user.name, user.groups, user.uid, extra, namespace, resource)
        cached = self._decisions.get(key)
        if cached is not None:
            return cached
        spec = k8s.V1SubjectAccessReviewSpec(
            user=user.name,
            groups=list(user.groups),
            uid=user.uid or None,
            extra={key: list(values) for key, values in user.extra.items()} or None,
            resource_attributes=k8s.V1ResourceAttributes(
                namespace=namespace,
                verb="list",
                group=EXTERNAL_METRICS_GROUP,
                version=EXTERNAL_METRICS_VERSION,
                resource=resource,
            ),
        )
        review = await self._reviewed(
            "SubjectAccessReview",
            self._authorization.create_subject_access_review(
                k8s.V1SubjectAccessReview(spec=spec), _request_timeout=REVIEW_TIMEOUT_SECONDS
            ),
        )
        allowed = bool(review.status is not None and review.status.allowed)
        self._decisions.put(key, allowed)
        return allowed


    async def _reviewed(self, kind: str, call: Awaitable[Any]) -> Any:
        try:
            with kubernetes_call(self._metrics, f"create_{kind.lower()}"):
                async with asyncio.timeout(REVIEW_TIMEOUT_SECONDS):
                    return await call
        except TimeoutError:
            raise ReviewUnavailableError(
                f"{kind}: no answer from the API server within {REVIEW_TIMEOUT_SECONDS:g} s"
            ) from None
        except ApiException as error:
            detail = f"{kind}: the API server answered {error.status} {error.reason}"
            raise ReviewUnavailableError(detail) from None
        except (OSError, aiohttp.ClientError) as error:
            raise ReviewUnavailableError(f"{kind}: cannot reach the API server: {error}") from None


def is_master(user: User) -> bool:
    return _MASTERS_GROUP in user.groups

"""The Kubernetes API, through kubernetes-asyncio: replica counts, pod readiness times for
cold-start learning, a Lease for leader election, and the optional direct pre-warm patch.

Reads report failure as None (the loop then decides without replica counts, which never scales
down on its own). Writes happen only on the elected leader, so two sidecar replicas never fight
over an HPA's minReplicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.exceptions import ApiException

from sidecar.budgets import REQUEST_TIMEOUT_SECONDS
from sidecar.clock import Clock, sleep_unless_stopped
from sidecar.control_loop import ReplicaCount
from sidecar.telemetry import KUBERNETES_CALL_FAILURES, CallMetrics, kubernetes_call

log = logging.getLogger(__name__)


SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


async def connect(
    kubeconfig: str | None,
    *,
    service_account_dir: Path = SERVICE_ACCOUNT_DIR,
    environ: Mapping[str, str] = os.environ,
) -> client.ApiClient:
    """In-cluster service-account config when running in a pod (KUBERNETES_SERVICE_HOST set and
    a token mounted), else the kubeconfig file (`kubeconfig`, or $KUBECONFIG / ~/.kube/config).
    The directory and environment are parameters so tests can stand in for a pod."""
    configuration = client.Configuration()
    try:
        if kubeconfig is not None:
            raise config.ConfigException("kubeconfig given explicitly")
        config.load_incluster_config(
            client_configuration=configuration,
            token_filename=str(service_account_dir / "token"),
            cert_filename=str(service_account_dir / "ca.crt"),
            environ=dict(environ),
        )
    except config.ConfigException:
        if kubeconfig is None:
            searched = environ.get("KUBECONFIG") or "~/.kube/config"
            if not any(Path(p).expanduser().is_file() for p in searched.split(os.pathsep) if p):
                raise config.ConfigException(
                    f"no in-cluster service account and no kubeconfig at {searched}: run it in a pod, "
                    "set kubernetes.kubeconfig, or set kubernetes.enabled: false to run without a cluster"
                ) from None
        await config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    return client.ApiClient(configuration)


class KubernetesReader:
    """Reads a scale target's spec.replicas and ready pods (a ReplicaReader for the loop)."""

    def __init__(self, api: client.ApiClient, metrics: CallMetrics | None = None) -> None:
        self._apps = client.AppsV1Api(api)
        self.metrics = metrics

    async def read_replicas(self, namespace: str, kind: str, name: str) -> ReplicaCount | None:
        target = await self._read_target(namespace, kind, name)
        if target is None or target.spec is None or target.spec.replicas is None:
            return None
        ready = target.status.ready_replicas if target.status is not None else None
        # The API omits readyReplicas when it is 0.
        return ReplicaCount(spec=target.spec.replicas, ready=ready or 0)

    async def pod_selector(self, namespace: str, kind: str, name: str) -> str | None:
        """The target's matchLabels as a label selector string, for the pod watch."""
        target = await self._read_target(namespace, kind, name)
        if target is None or target.spec is None or target.spec.selector is None:
            return None
        labels = target.spec.selector.match_labels or {}
        return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or None

    async def _read_target(self, namespace: str, kind: str, name: str) -> Any | None:
        try:
            with kubernetes_call(self.metrics, f"read_{kind.lower()}"):
                if kind == "StatefulSet":
                    return await self._apps.read_namespaced_stateful_set(
                        name, namespace, _request_timeout=REQUEST_TIMEOUT_SECONDS
                    )
                return await self._apps.read_namespaced_deployment(
                    name, namespace, _request_timeout=REQUEST_TIMEOUT_SECONDS
                )
        except KUBERNETES_CALL_FAILURES as error:
            log.warning("cannot read %s %s/%s: %s", kind, namespace, name, _describe(error))
            return None


# --- Cold start: pod creation -> Ready ----------------------------------------------------------


@dataclass
class ColdStartTracker:
    """(created, ready) Unix-time pairs per workload, newest `keep` of them, learned from pod
    watches; `estimate` turns them into seconds (the core's estimator), or None.

    Pod UIDs already counted are remembered so a watch restart (which lists every pod again) does
    not count a pod twice: the newest `remember_pods` of them (10,000 UIDs, about 1 MB), oldest
    forgotten first. A pod forgotten and then listed again by a restarted watch is long Ready, and
    its pair is the one it gave before, so at worst one sample repeats."""

    estimate: Callable[[Sequence[tuple[float, float]]], float | None]
    keep: int = 50
    remember_pods: int = 10_000
    pairs: dict[tuple[str, str], deque[tuple[float, float]]] = field(default_factory=dict)
    _seen: OrderedDict[str, None] = field(default_factory=OrderedDict)
    # The estimate per workload until its next sample: every tick asks, pods arrive rarely.
    _estimates: dict[tuple[str, str], float | None] = field(default_factory=dict)

    def record(self, key: tuple[str, str], pod_uid: str, created: float, ready: float) -> bool:
        if pod_uid in self._seen or ready < created:
            return False
        self._seen[pod_uid] = None
        if len(self._seen) > self.remember_pods:
            self._seen.popitem(last=False)
        self.pairs.setdefault(key, deque(maxlen=self.keep)).append((created, ready))
        self._estimates.pop(key, None)
        return True

    def cold_start_seconds(self, namespace: str, workload: str) -> float | None:
        key = (namespace, workload)
        if key not in self._estimates:
            pairs = self.pairs.get(key)
            self._estimates[key] = self.estimate(list(pairs)) if pairs else None
        return self._estimates[key]

    def samples_seconds(self) -> dict[tuple[str, str], tuple[float, ...]]:
        return {key: tuple(ready - created for created, ready in pairs) for key, pairs in self.pairs.items()}

    def restore(self, samples: dict[tuple[str, str], tuple[float, ...]]) -> None:
        """Reload saved durations as pairs starting at 0 (only the difference is used)."""
        for key, durations in samples.items():
            self.pairs[key] = deque(((0.0, d) for d in durations), maxlen=self.keep)
            self._estimates.pop(key, None)


def first_ready_pair(pod: Any) -> tuple[str, float, float] | None:
    """(uid, created, ready) for a pod that is Ready and never restarted a container; a pod that
    restarted has a later Ready transition, which would overstate its cold start."""
    metadata, status = pod.metadata, pod.status
    if metadata is None or status is None or metadata.creation_timestamp is None:
        return None
    if any((c.restart_count or 0) > 0 for c in status.container_statuses or []):
        return None
    for condition in status.conditions or []:
        if condition.type == "Ready" and condition.status == "True" and condition.last_transition_time:
            return metadata.uid, _unix(metadata.creation_timestamp), _unix(condition.last_transition_time)
    return None


async def watch_cold_starts(
    api: client.ApiClient,
    key: tuple[str, str],
    label_selector: str,
    tracker: ColdStartTracker,
    stop: asyncio.Event,
    retry_seconds: float = 5.0,
    watch_seconds: int = 300,
    metrics: CallMetrics | None = None,
) -> None:
    """Watch the workload's pods until `stop`; each pod that becomes Ready adds one sample. The
    watch restarts after the server ends it (every `watch_seconds`) or fails."""
    core = client.CoreV1Api(api)
    namespace = key[0]
    while not stop.is_set():
        watcher = watch.Watch()
        try:
            with kubernetes_call(metrics, "watch_pods", timed=False):
                async for event in watcher.stream(
                    core.list_namespaced_pod,
                    namespace,
                    label_selector=label_selector,
                    timeout_seconds=watch_seconds,
                    # The server ends the watch after watch_seconds; a silent one is given up a bit later.
                    _request_timeout=watch_seconds + REQUEST_TIMEOUT_SECONDS,
                ):
                    if event["type"] in ("ADDED", "MODIFIED") and (pair := first_ready_pair(event["object"])):
                        uid, created, ready = pair
                        tracker.record(key, uid, created, ready)
                    if stop.is_set():
                        break
        except KUBERNETES_CALL_FAILURES as error:
            log.warning("pod watch for %s/%s failed: %s", *key, _describe(error))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), retry_seconds)
        finally:
            watcher.stop()


# --- Leader election on a coordination.k8s.io/v1 Lease ------------------------------------------


class LeaseElector:
    """Holds a Lease while alive; `is_leader` is true only while our renewal is fresh.

    The rules are the Lease's own: a holder renews every `duration/3`; anyone may take a Lease
    whose renewTime is older than leaseDurationSeconds; every write carries the resourceVersion
    read, so of two candidates racing for an expired Lease the API accepts one and answers 409 to
    the other.
    """

    def __init__(
        self,
        api: client.ApiClient,
        clock: Clock,
        namespace: str,
        name: str,
        identity: str,
        duration_seconds: float,
        metrics: CallMetrics | None = None,
    ) -> None:
        self._leases = client.CoordinationV1Api(api)
        self._metrics = metrics
        self._clock = clock
        self.namespace, self.name, self.identity = namespace, name, identity
        self.duration_seconds = duration_seconds
        # A renewal slower than a third of the Lease is no renewal: give up and try again.
        self._request_timeout = min(REQUEST_TIMEOUT_SECONDS, duration_seconds / 3)
        self._renewed_at: float | None = None

    @property
    def is_leader(self) -> bool:
        return self._renewed_at is not None and self._clock.now() - self._renewed_at < self.duration_seconds

    async def try_acquire(self) -> bool:
        """One attempt to become or stay leader; returns `is_leader` afterwards."""
        now = self._clock.now()
        try:
            with kubernetes_call(self._metrics, "read_lease"):
                lease = await self._leases.read_namespaced_lease(
                    self.name, self.namespace, _request_timeout=self._request_timeout
                )
        except ApiException as error:
            if error.status != 404:
                log.warning("cannot read lease %s/%s: %s", self.namespace, self.name, _describe(error))
                return self.is_leader
            return await self._write(now, None)
        except KUBERNETES_CALL_FAILURES as error:
            log.warning("cannot read lease %s/%s: %s", self.namespace, self.name, _describe(error))
            return self.is_leader
        spec = lease.spec or client.V1LeaseSpec()
        holder = spec.holder_identity
        renewed = _unix(spec.renew_time) if spec.renew_time else 0.0
        duration = spec.lease_duration_seconds or self.duration_seconds
        if holder != self.identity and holder and now - renewed < duration:
            self._renewed_at = None
            return False
        return await self._write(now, lease)

    async def _write(self, now: float, lease: Any | None) -> bool:
        stamp = datetime.fromtimestamp(now, UTC)
        ours = lease is not None and lease.spec is not None and lease.spec.holder_identity == self.identity
        transitions = (lease.spec.lease_transitions or 0) if lease is not None and lease.spec else 0
        spec = client.V1LeaseSpec(
            holder_identity=self.identity,
            # Rounded up: a truncated duration would let another replica take the Lease while
            # this one still counts itself leader.
            lease_duration_seconds=math.ceil(self.duration_seconds),
            acquire_time=lease.spec.acquire_time if ours else stamp,
            renew_time=stamp,
            lease_transitions=transitions if ours or lease is None else transitions + 1,
        )
        try:
            if lease is None:
                body = client.V1Lease(
                    metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace), spec=spec
                )
                with kubernetes_call(self._metrics, "create_lease"):
                    await self._leases.create_namespaced_lease(
                        self.namespace, body, _request_timeout=self._request_timeout
                    )
            else:
                metadata = client.V1ObjectMeta(
                    name=self.name, namespace=self.namespace, resource_version=lease.metadata.resource_version
                )
                with kubernetes_call(self._metrics, "replace_lease"):
                    await self._leases.replace_namespaced_lease(
                        self.name,
                        self.namespace,
                        client.V1Lease(metadata=metadata, spec=spec),
                        _request_timeout=self._request_timeout,
                    )
        except ApiException as error:
            if error.status not in (409, 422):
                log.warning("cannot write lease %s/%s: %s", self.namespace, self.name, _describe(error))
            self._renewed_at = None
            return False
        except KUBERNETES_CALL_FAILURES as error:
            log.warning("cannot write lease %s/%s: %s", self.namespace, self.name, _describe(error))
            return self.is_leader
        if not ours:
            log.info(
                "became leader", extra={"lease": f"{self.namespace}/{self.name}", "identity": self.identity}
            )
        self._renewed_at = now
        return True

    async def run(self, stop: asyncio.Event, *, release_on_stop: bool = True) -> None:
        """Renew every third of the duration until `stop`, then give the Lease up so the other
        replica takes over at once instead of after a full duration. A caller that still has
        leader-only writes to make after `stop` (restoring a pre-warm floor) passes
        `release_on_stop=False` and calls `release()` itself once they are done."""
        while not stop.is_set():
            await self.try_acquire()
            await sleep_unless_stopped(self._clock, self.duration_seconds / 3, stop)
        if release_on_stop:
            await self.release()

    async def release(self) -> None:
        if not self.is_leader:
            return
        self._renewed_at = None
        with contextlib.suppress(*KUBERNETES_CALL_FAILURES):
            with kubernetes_call(self._metrics, "read_lease"):
                lease = await self._leases.read_namespaced_lease(
                    self.name, self.namespace, _request_timeout=self._request_timeout
                )
            if lease.spec is not None and lease.spec.holder_identity == self.identity:
                lease.spec.holder_identity = None
                lease.spec.renew_time = None
                with kubernetes_call(self._metrics, "replace_lease"):
                    await self._leases.replace_namespaced_lease(
                        self.name, self.namespace, lease, _request_timeout=self._request_timeout
                    )


# --- Direct pre-warm ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PrewarmTarget:
    namespace: str
    kind: str  # "HorizontalPodAutoscaler" or "ScaledObject"
    name: str


# Written with every raise and removed with the restore, so the owner's own minimum survives a
# leader change or a crash: the next leader reads it here instead of taking the raised floor for it.
OWNER_MIN_ANNOTATION = "predictive-autoscaler.io/owner-min-replicas"


class Prewarmer:
    """Raises an HPA's minReplicas (or a ScaledObject's minReplicaCount) to the replicas the
    forecast asks for, and puts the owner's value back once the forecast no longer needs more.
    The owner's value travels with the raise as an annotation on the object; only the leader
    writes, and a replica that was not leader forgets what it knew, since another may have
    written since."""

    def __init__(
        self, api: client.ApiClient, elector: LeaseElector | None, metrics: CallMetrics | None = None
    ) -> None:
        self._hpa = client.AutoscalingV2Api(api)
        self._metrics = metrics
        self._custom = client.CustomObjectsApi(api)
        self._elector = elector
        self.original: dict[PrewarmTarget, int] = {}
        self.applied: dict[PrewarmTarget, int] = {}
        self._settled: set[PrewarmTarget] = set()  # read once, nothing of ours raised there

    async def apply(self, target: PrewarmTarget, wanted_min: int | None) -> int | None:
        """Make the floor max(owner's minimum, wanted_min); None wanted restores the owner's.
        Returns the floor written, or None when nothing was written."""
        if self._elector is not None and not self._elector.is_leader:
            self.original.clear()
            self.applied.clear()
            self._settled.clear()
            return None
        try:
            if target not in self.original:
                if wanted_min is None and target in self._settled:
                    return None
                owner, current = await self._read_min(target)
                if wanted_min is None and owner == current:
                    self._settled.add(target)
                    return None
                self.original[target], self.applied[target] = owner, current
                self._settled.discard(target)
            owner = self.original[target]
            floor = max(owner, wanted_min or 0)
            written = None
            if floor != self.applied[target]:
                await self._write_min(target, floor, None if floor == owner else owner)
                written = floor
        except KUBERNETES_CALL_FAILURES as error:
            log.warning(
                "pre-warm of %s %s/%s failed: %s",
                target.kind,
                target.namespace,
                target.name,
                _describe(error),
            )
            return None
        if wanted_min is None:
            self.original.pop(target, None)
            self.applied.pop(target, None)
            self._settled.add(target)
        else:
            self.applied[target] = floor
        return written

    async def _read_min(self, target: PrewarmTarget) -> tuple[int, int]:
        """(the owner's minimum, the floor now). They differ only while a raise of ours stands."""
        if target.kind == "ScaledObject":
            with kubernetes_call(self._metrics, "read_scaledobject"):
                body = await self._custom.get_namespaced_custom_object(
                    "keda.sh",
                    "v1alpha1",
                    target.namespace,
                    "scaledobjects",
                    target.name,
                    _request_timeout=REQUEST_TIMEOUT_SECONDS,
                )
            current = int(body.get("spec", {}).get("minReplicaCount", 0))
            annotations = body.get("metadata", {}).get("annotations") or {}
        else:
            with kubernetes_call(self._metrics, "read_horizontalpodautoscaler"):
                hpa = await self._hpa.read_namespaced_horizontal_pod_autoscaler(
                    target.name, target.namespace, _request_timeout=REQUEST_TIMEOUT_SECONDS
                )
            current = int(hpa.spec.min_replicas or 1)
            annotations = hpa.metadata.annotations or {}
        recorded = annotations.get(OWNER_MIN_ANNOTATION)
        # A missing or unreadable note means nothing of ours stands: the floor now is the owner's.
        if recorded is None or not (recorded.isascii() and recorded.isdigit()):
            return current, current
        return int(recorded), current

    async def _write_min(self, target: PrewarmTarget, floor: int, owner: int | None) -> None:
        """Set the floor; `owner` is recorded with a raise, None (restored) removes the record."""
        note = {OWNER_MIN_ANNOTATION: None if owner is None else str(owner)}
        if target.kind == "ScaledObject":
            with kubernetes_call(self._metrics, "patch_scaledobject"):
                await self._custom.patch_namespaced_custom_object(
                    "keda.sh",
                    "v1alpha1",
                    target.namespace,
                    "scaledobjects",
                    target.name,
                    {"metadata": {"annotations": note}, "spec": {"minReplicaCount": floor}},
                    # A dict would otherwise go out as a JSON Patch, which needs a list; custom
                    # resources take no strategic merge either, so say merge patch explicitly.
                    _content_type="application/merge-patch+json",
                    _request_timeout=REQUEST_TIMEOUT_SECONDS,
                )
        else:
            with kubernetes_call(self._metrics, "patch_horizontalpodautoscaler"):
                await self._hpa.patch_namespaced_horizontal_pod_autoscaler(
                    target.name,
                    target.namespace,
                    {"metadata": {"annotations": note}, "spec": {"minReplicas": floor}},
                    _request_timeout=REQUEST_TIMEOUT_SECONDS,
                )


def _unix(moment: datetime) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _describe(error: BaseException) -> str:
    if isinstance(error, ApiException):
        return f"HTTP {error.status} {error.reason}"
    return f"{type(error).__name__}: {error}"

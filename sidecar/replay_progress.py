"""What `serve --replay` tells the person watching it, beside the decision lines the loop writes: a
line at its start saying what it replays and where to look, a progress line every simulated hour,
and a summary when it ends (or is stopped).

It only reads the simulation the loop drives (`Simulation.decisions`, the simulated Deployment);
the decisions themselves are the replay's, made on the one control-loop path."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise

import numpy as np

from autoscaler.cost import SECONDS_PER_HOUR
from sidecar.latest_decisions import PublishedDecision
from sidecar.replay_simulation import Simulation
from sidecar.settings import WorkloadSettings

log = logging.getLogger(__name__)

# Where the README explains what the demo showed and how to compare policies on the same trace.
README_SECTIONS = "README.md, sections 'Two commands' (the reasons) and 'Compare policies on a trace'"


def trace_time(seconds: float) -> str:
    return f"{datetime.fromtimestamp(seconds, UTC):%Y-%m-%d %H:%M} UTC"


def _local(address: str) -> str:
    """A listener's host:port as a URL host a browser on this machine reaches."""
    host, _, port = address.rpartition(":")
    return f"localhost:{port}" if host in {"0.0.0.0", "::", "[::]", ""} else address


def urls(addresses: Mapping[str, str], namespace: str) -> list[str]:
    """The demo's endpoints, as the README's curl lines use them."""
    found = []
    if "health" in addresses:
        found.append(f"http://{_local(addresses['health'])}/metrics")
    if "external_metrics" in addresses:
        host = _local(addresses["external_metrics"])
        found.append(
            f"http://{host}/apis/external.metrics.k8s.io/v1beta1/namespaces/{namespace}/desired_replicas"
        )
    return found


@dataclass(frozen=True, slots=True)
class ReplaySummary:
    """The replay up to its last decision at `at`; `reasons` counts ticks, `changes` the decision
    lines the loop logged (a change of count or reason, the first decision included)."""

    start: float
    end: float
    at: float
    finished: bool
    replicas_low: int
    replicas_high: int
    reasons: Counter[str]
    changes: int
    gpu_hours: float

    @property
    def done_share(self) -> float:
        return done_share(self.start, self.end, self.at)


def done_share(start: float, end: float, at: float) -> float:
    return min(1.0, (at - start) / (end - start)) if end > start else 1.0


def gpu_hours(simulation: Simulation, at: float, gpus_per_replica: float) -> float:
    """GPU-hours of the simulated Deployment's pods (ready or starting: what a cluster bills) from
    the trace start to the end of the tick at `at`."""
    seconds = int(at + simulation.tick_seconds - simulation.cluster.start_seconds)
    provisioned = simulation.cluster.deployment.provisioned_per_second()[:seconds]
    return float(np.sum(provisioned)) / SECONDS_PER_HOUR * gpus_per_replica


def summarize(simulation: Simulation, gpus_per_replica: float) -> ReplaySummary | None:
    """None before the first decision."""
    decisions = simulation.decisions
    if not decisions:
        return None
    at = decisions[-1][0]
    replicas = [r for _, r, _ in decisions]
    changed = sum(1 for a, b in pairwise(decisions) if a[1:] != b[1:])
    return ReplaySummary(
        start=simulation.cluster.start_seconds,
        end=simulation.ends_at,
        at=at,
        finished=at + simulation.tick_seconds >= simulation.ends_at,
        replicas_low=min(replicas),
        replicas_high=max(replicas),
        reasons=Counter(reason for _, _, reason in decisions),
        changes=changed + 1,
        gpu_hours=gpu_hours(simulation, at, gpus_per_replica),
    )


@dataclass
class ReplayProgress:
    """Call `started` once the servers listen, `ticked` after every tick, `ended` at the end."""

    simulation: Simulation
    workload: WorkloadSettings
    every_seconds: float = SECONDS_PER_HOUR
    _next_at: float = field(init=False)

    def __post_init__(self) -> None:
        self._next_at = self.simulation.cluster.start_seconds + self.every_seconds

    def started(self, addresses: Mapping[str, str]) -> None:
        simulation = self.simulation
        start = simulation.cluster.start_seconds
        log.info(
            "replaying %s to %s (%.1f days) for %s/%s; log times are trace time; watch %s",
            trace_time(start),
            trace_time(simulation.ends_at),
            (simulation.ends_at - start) / 86400,
            self.workload.namespace,
            self.workload.name,
            " and ".join(urls(addresses, self.workload.namespace)),
        )

    def ticked(self, latest: PublishedDecision | None) -> None:
        """After a tick, before the simulation moves on: `latest` is the workload's decision."""
        if latest is None or latest.published_at < self._next_at:
            return
        at = latest.published_at
        while self._next_at <= at:
            self._next_at += self.every_seconds
        simulation = self.simulation
        start = simulation.cluster.start_seconds
        log.info(
            "progress: %.0f%% of the trace, %d replicas (%s), %d ready, %.1f GPU-hours so far",
            100 * done_share(start, simulation.ends_at, at),
            latest.decision.replicas,
            latest.decision.reason,
            simulation.cluster.deployment.ready_replicas(round(at - start)),
            gpu_hours(simulation, at, self.workload.gpus_per_replica),
        )

    def ended(self, addresses: Mapping[str, str]) -> ReplaySummary | None:
        summary = summarize(self.simulation, self.workload.gpus_per_replica)
        if summary is None:
            log.info("replay stopped before its first decision")
            return None
        reasons = ", ".join(f"{reason} {count}" for reason, count in summary.reasons.most_common())
        log.info(
            "replay %s at %s (%.0f%% of the trace): replicas %d..%d, %d decision changes, "
            "ticks by reason: %s; %.1f GPU-hours (%g GPU per replica)",
            "finished" if summary.finished else "stopped",
            trace_time(summary.at),
            100 * summary.done_share,
            summary.replicas_low,
            summary.replicas_high,
            summary.changes,
            reasons,
            summary.gpu_hours,
            self.workload.gpus_per_replica,
        )
        log.info(
            "next: while a replay serves, read %s (the Grafana dashboard deploy/base/dashboards/"
            "predictive-autoscaler.json plots them); the reasons and the policy comparison on this "
            "trace (`make replay`): %s",
            " and ".join(urls(addresses, self.workload.namespace)),
            README_SECTIONS,
        )
        return summary

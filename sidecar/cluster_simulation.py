"""`serve --replay TRACE`: a trace stands in for Prometheus and a simulated cluster for Kubernetes,
so the real loop and the real servers run on a laptop with an accelerated clock.

`TraceSignals` answers the load query from the trace the way Prometheus would answer
`rate(...[step])`: the mean rate over the last complete step before the query time, never a
value from the future. `SimulatedCluster` plays the HPA and the pods: spec.replicas follows the
published decision and each new pod becomes ready one cold start after it was asked for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from autoscaler.observations import Reading
from forecasting.series import LoadSeries
from sidecar.clock import Clock
from sidecar.control_loop import ReplicaCount
from sidecar.latest_decisions import LatestDecisions
from simulator.trace import read_trace


def load_trace(path: Path) -> LoadSeries:
    """A `timestamp_s,requests` file (parsed and validated by the simulator's reader, which
    raises TraceError naming the line) as request rates on its grid, absent steps NaN."""
    trace = read_trace(path)
    return LoadSeries(
        start=float(trace.start_seconds), step_seconds=float(trace.step_seconds), values=trace.rate_rps()
    )


@dataclass
class TraceSignals:
    """A SignalReader over a trace: every query is the trace's load (replay has one workload,
    and other signals are absent, as an unconfigured query would be)."""

    trace: LoadSeries
    load_query: str

    async def instant(self, query: str, at: float) -> Reading | None:
        if query != self.load_query:
            return None
        index = math.floor((at - self.trace.start) / self.trace.step_seconds) - 1
        if not 0 <= index < len(self.trace.values) or math.isnan(self.trace.values[index]):
            return None
        return Reading(value=float(self.trace.values[index]), observed_at=at)

    async def history(self, query: str, start: float, end: float, step_seconds: float) -> LoadSeries | None:
        if query != self.load_query:
            return None
        visible = self.trace.until(end)
        factor = max(1, round(step_seconds / visible.step_seconds))
        if factor > 1:
            visible = visible.resample(visible.step_seconds * factor)
        skip = max(0, math.floor((start - visible.start) / visible.step_seconds))
        values = visible.values[skip:]
        if not len(values) or np.all(np.isnan(values)):
            return None
        return LoadSeries(visible.start + skip * visible.step_seconds, visible.step_seconds, values)


@dataclass
class SimulatedCluster:
    """One Deployment driven by an HPA that adopts our published replica count at once (its
    AverageValue-1 target makes HPA's own formula land on it). Pods are ready `cold_start_seconds`
    after creation; a scale-down removes not-ready pods first."""

    clock: Clock
    cold_start_seconds: float
    spec: int = 1
    ready_at: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ready_at = [self.clock.now()] * self.spec

    async def read_replicas(self, namespace: str, kind: str, name: str) -> ReplicaCount:
        now = self.clock.now()
        return ReplicaCount(spec=self.spec, ready=sum(1 for t in self.ready_at if t <= now))

    def follow(self, latest: LatestDecisions) -> None:
        items = latest.all()
        if not items:
            return
        desired = items[0].decision.replicas
        now = self.clock.now()
        if desired > len(self.ready_at):
            self.ready_at += [now + self.cold_start_seconds] * (desired - len(self.ready_at))
        else:
            self.ready_at = sorted(self.ready_at)[:desired]
        self.spec = desired

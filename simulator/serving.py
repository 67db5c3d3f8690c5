"""A cluster of vLLM-like replicas serving a per-request trace (`ServingCluster`), scaled by one
policy: a ticked one through `serve`, or the shipped control loop, which moves the cluster tick by
tick as a simulator.pods.Deployment (sidecar/replay_simulation).

Each replica batches continuously: a routed request waits in the replica's queue until it is
admitted (fewer than `max_num_seqs` running and its whole KV footprint, prompt + output, free in
the cache: no preemption, so admission is a little more conservative than vLLM's, which admits on
the prompt and preempts when the cache fills), is prefilled first come first served in chunks of
`max_num_batched_tokens` per engine step, and then decodes one token per step. A step takes
`decode_step_seconds(batch, KV tokens of the batch)`, plus chunk / prefill throughput while a
prefill runs. Between events (an arrival, an admission, a prefill or a request finishing) every
rate is constant, so the simulation jumps from event to event: a request costs a few heap
operations, not one per token. The first token comes at the end of the prefill; TPOT is the
decode time over the remaining tokens.

Routing sends an arrival to the ready replica with the fewest prompt tokens still to prefill
(then the fewest requests in flight): a count alone would pile work behind a 100k-token prompt;
with none ready it waits at the gateway until one is. Pods are created when the policy raises
spec.replicas and become Ready after `cold_start()` seconds (pluggable: a callable drawing one
cold start per new pod). Scale-down removes not-ready pods first (newest first), then the most
recently ready, as the ReplicaSet controller ranks them; a removed ready pod takes no new
requests, finishes what it holds (drains, reported) and is billed until then. Nothing is dropped.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from simulator.llm_signals import LlmSignals
from simulator.pods import PodStart
from simulator.request_trace import RequestTrace
from simulator.serving_profile import ServingProfile
from simulator.view import ClusterView, MetricsPipeline

# Work within a microsecond of done is done: 14 days in is 1.2e6 s, where a float step is 2e-10 s,
# so a remainder in tokens alone could schedule an event at the very time it is processed, forever.
EPSILON_SECONDS = 1e-6
INF = math.inf


@dataclass(frozen=True, slots=True)
class LlmClusterView(ClusterView):
    """ClusterView (its `metrics` is the request-rate pipeline) plus vLLM's signals."""

    signals: LlmSignals


class LlmAutoscaler(Protocol):
    name: str
    tick_seconds: float

    def step(self, view: LlmClusterView) -> int: ...


@dataclass(frozen=True, slots=True)
class ServingSettings:
    min_replicas: int = 1
    max_replicas: int = 1000
    scrape_seconds: float = 5.0
    initial_replicas: int = 1


@dataclass(frozen=True, slots=True, eq=False)
class ServingRun:
    """One policy's run. Per request (trace order): replica index, admitted, first token and
    finished times in seconds since the trace start. Per tick: time, ready and provisioned pods.
    `gpu_hours` bills every pod from creation to removal (not ready) or drained (ready), within
    the trace span; `drained` lists (replica, seconds it served after removal)."""

    name: str
    replica: np.ndarray
    admitted_s: np.ndarray
    first_token_s: np.ndarray
    finished_s: np.ndarray
    tick_at: np.ndarray
    tick_ready: np.ndarray
    tick_provisioned: np.ndarray
    ready_at: np.ndarray
    gpu_hours: float
    scale_events: int
    drained: tuple[tuple[int, float], ...]


class _Replica:
    """Engine state; rates hold from `last` until the next event, so advancing is exact."""

    __slots__ = (
        "created",
        "decode",
        "decode_clock",
        "draining",
        "generated",
        "gone",
        "index",
        "kv_decoding",
        "kv_reserved",
        "last",
        "prefill",
        "prefill_left",
        "prompt_done",
        "queued_tokens",
        "rate_decode",
        "rate_prefill",
        "ready_at",
        "removed_at",
        "version",
        "waiting",
    )  # fmt: skip

    def __init__(self, index: int, created: float, ready_at: float) -> None:
        self.index = index
        self.created = created
        self.ready_at = ready_at
        self.removed_at = INF
        self.gone = INF
        self.draining = False
        self.waiting: deque[int] = deque()
        self.prefill: deque[int] = deque()
        self.prefill_left = 0.0
        self.decode: list[tuple[float, int]] = []
        self.decode_clock = 0.0
        self.kv_reserved = 0
        self.queued_tokens = 0  # prompt tokens routed here and not yet prefilled
        self.kv_decoding = 0
        self.last = created
        self.version = 0
        self.rate_decode = 0.0
        self.rate_prefill = 0.0
        self.prompt_done = 0.0
        self.generated = 0.0

    def running(self) -> int:
        return len(self.prefill) + len(self.decode)

    def load(self) -> tuple[int, int]:
        """What routing compares: prompt tokens still to prefill, then requests in flight."""
        return (self.queued_tokens, len(self.waiting) + len(self.prefill) + len(self.decode))

    def empty(self) -> bool:
        return not (self.waiting or self.prefill or self.decode)


class ServingCluster:
    """The serving cluster as a Deployment its driver moves through time (simulator/pods.py's
    `Deployment`): `advance(t)` runs every arrival, engine event and scrape up to and including
    `t`; `scale(t, n)` sets spec.replicas at `t` (after advancing there); `ready_replicas(t)` and
    `became_ready(t)` answer at `t` as a ReplicaReader and a pod watch would. Times are seconds
    since the trace start and never go back. `finish(name)` serves what is left with the fleet
    as it stands and returns the run.

    The event loop is one generator (`_process`), so its state stays in local variables: a
    request costs a few heap operations and no attribute lookups."""

    def __init__(
        self,
        trace: RequestTrace,
        profile: ServingProfile,
        settings: ServingSettings,
        cold_start: Callable[[], float],
        signals: LlmSignals | None = None,
    ) -> None:
        self.trace = trace
        self.profile = profile
        self.settings = settings
        self.signals = signals if signals is not None else LlmSignals()
        self.spec = settings.initial_replicas
        self.scale_events = 0
        self.tick_at: list[float] = []
        self.tick_ready: list[int] = []
        self.tick_provisioned: list[int] = []
        self._cold_start = cold_start
        self._replicas: list[_Replica] = []
        self._pods: list[_Replica] = []  # not removed
        self._reported = 0  # replicas created before this index were handed to became_ready
        self._unreported: list[_Replica] = []
        self._now = -INF
        self._run: ServingRun | None = None
        self._process = self._events()
        next(self._process)

    @property
    def status_replicas(self) -> int:
        """Pods that exist, ready or starting."""
        return len(self._pods)

    def ready_replicas(self, t: float) -> int:
        self.advance(t)
        return sum(1 for r in self._pods if r.ready_at <= t)

    def became_ready(self, t: float) -> list[PodStart]:
        """Pods created by a scale-up that turned Ready by `t` since the last call, oldest first
        (the initial pods were ready before the trace: they teach nothing about cold starts)."""
        self.advance(t)
        self._unreported += self._replicas[self._reported :]
        self._reported = len(self._replicas)
        done = [r for r in self._unreported if r.ready_at <= t and r.removed_at > r.ready_at]
        self._unreported = [r for r in self._unreported if r.ready_at > t and r.removed_at > t]
        return [PodStart(created=r.created, ready=r.ready_at) for r in sorted(done, key=lambda r: r.ready_at)]

    def advance(self, t: float) -> None:
        if t > self._now:
            self._now = t
            self._process.send((t, None))

    def scale(self, t: float, replicas: int) -> None:
        """spec.replicas at `t`, within the settings' bounds; one tick of the run's record."""
        self.advance(t)
        self._process.send(
            (t, min(max(int(replicas), self.settings.min_replicas), self.settings.max_replicas))
        )

    def finish(self, name: str) -> ServingRun:
        if self._run is None:
            try:
                self._process.send((INF, None))
            except StopIteration as stop:
                self._run = replace(stop.value, name=name)
        assert self._run is not None
        return self._run

    def _events(self) -> Generator[None, tuple[float, int | None], ServingRun]:
        trace, profile, settings, signals = self.trace, self.profile, self.settings, self.signals
        arrivals = trace.arrival_s.tolist()
        inputs = trace.input_tokens.tolist()
        outputs = trace.output_tokens.tolist()
        n = len(arrivals)
        footprint = [min(i + o, profile.kv_cache_tokens) for i, o in zip(inputs, outputs, strict=True)]
        replica_of = [-1] * n
        admitted = [math.nan] * n
        first_token = [math.nan] * n
        finished = [math.nan] * n
        horizon = float(trace.duration_seconds)
        kv_cap = profile.kv_cache_tokens
        max_seqs = profile.max_num_seqs
        chunk_budget = profile.max_num_batched_tokens
        prefill_tps = profile.prefill_tokens_per_second
        step_seconds = profile.decode_step_seconds
        cold_start = self._cold_start

        replicas = self._replicas
        pods = self._pods
        events: list[tuple[float, int, int]] = []  # (time, replica index, version); ready uses version -1
        gateway: deque[int] = deque()
        done = 0
        totals = [0.0, 0.0]  # prompt and generated tokens of retired pods
        offset = trace.start_seconds
        active: list[_Replica] = []  # pods not yet gone, for the scrape

        def rates(r: _Replica) -> None:
            b = len(r.decode)
            step = step_seconds(b, r.kv_decoding)
            if r.prefill:
                chunk = max(chunk_budget - b, 1)
                iteration = step + chunk / prefill_tps
                r.rate_prefill = chunk / iteration
                r.rate_decode = 1.0 / iteration if b else 0.0
            else:
                r.rate_prefill = 0.0
                r.rate_decode = 1.0 / step if b else 0.0

        def advance(r: _Replica, t: float) -> None:
            dt = t - r.last
            if dt > 0:
                if r.rate_decode:
                    r.decode_clock += r.rate_decode * dt
                    r.generated += r.rate_decode * dt * len(r.decode)
                if r.rate_prefill:
                    r.prefill_left -= r.rate_prefill * dt
                    r.prompt_done += r.rate_prefill * dt
            r.last = t

        def schedule(r: _Replica) -> None:
            r.version += 1
            rates(r)
            when = INF
            if r.rate_prefill:
                when = r.last + max(r.prefill_left, 0.0) / r.rate_prefill
            if r.decode and r.rate_decode:
                when = min(when, r.last + max(r.decode[0][0] - r.decode_clock, 0.0) / r.rate_decode)
            if when < INF:
                heapq.heappush(events, (when, r.index, r.version))
            elif r.draining and not r.waiting:
                r.gone = r.last

        def admit(r: _Replica, t: float) -> None:
            while r.waiting:
                request = r.waiting[0]
                busy = r.running()
                if busy >= max_seqs or (busy and r.kv_reserved + footprint[request] > kv_cap):
                    return
                r.waiting.popleft()
                admitted[request] = t
                r.kv_reserved += footprint[request]
                if not r.prefill:
                    r.prefill_left = float(inputs[request])
                r.prefill.append(request)

        def run_events(r: _Replica, t: float) -> None:
            nonlocal done
            advance(r, t)
            while r.prefill and r.prefill_left <= r.rate_prefill * EPSILON_SECONDS:
                request = r.prefill.popleft()
                first_token[request] = t
                r.queued_tokens -= inputs[request]
                signals.observe_ttft(t + offset, t - arrivals[request])
                if outputs[request] <= 1:
                    finished[request] = t
                    r.kv_reserved -= footprint[request]
                    done += 1
                else:
                    heapq.heappush(r.decode, (r.decode_clock + outputs[request] - 1, request))
                    r.kv_decoding += footprint[request]
                if r.prefill:
                    r.prefill_left = float(inputs[r.prefill[0]])
            while r.decode and r.decode[0][0] - r.decode_clock <= r.rate_decode * EPSILON_SECONDS:
                _, request = heapq.heappop(r.decode)
                finished[request] = t
                r.kv_reserved -= footprint[request]
                r.kv_decoding -= footprint[request]
                done += 1
            admit(r, t)
            schedule(r)

        def route(request: int, t: float) -> None:
            best: _Replica | None = None
            best_load = (0, 0)
            for r in pods:
                if r.ready_at <= t:
                    load = r.load()
                    if best is None or load < best_load:
                        best, best_load = r, load
            if best is None:
                gateway.append(request)
                return
            replica_of[request] = best.index
            advance(best, t)
            best.waiting.append(request)
            best.queued_tokens += inputs[request]
            admit(best, t)
            schedule(best)

        def add_pod(t: float, ready_at: float) -> None:
            r = _Replica(len(replicas), t, ready_at)
            replicas.append(r)
            pods.append(r)
            active.append(r)
            if ready_at > t:
                heapq.heappush(events, (ready_at, r.index, -1))

        def remove_pods(count: int, t: float) -> None:
            # Not ready first (latest ready time first), then the most recently ready.
            order = sorted(pods, key=lambda r: (r.ready_at <= t, -r.ready_at))
            for r in order[:count]:
                pods.remove(r)
                r.removed_at = t
                if r.ready_at > t:
                    r.gone = t
                    continue
                r.draining = True
                advance(r, t)
                if r.empty():
                    r.gone = t

        for _ in range(settings.initial_replicas):
            add_pod(0.0, 0.0)
        self._reported = len(replicas)
        next_scrape = 0.0
        scrape = settings.scrape_seconds
        i = 0
        until, wanted = yield
        while True:
            # Everything up to and including `until`: in the order an engine, the gateway, the
            # scraper and then the driver see one instant.
            while True:
                t_arrival = arrivals[i] if i < n else INF
                t_event = events[0][0] if events else INF
                t_scrape = next_scrape if next_scrape < horizon else INF
                t = min(t_arrival, t_event, t_scrape)
                if t > until or (until == INF and done >= n):
                    break
                if t == INF:
                    raise RuntimeError("serving stalled with requests left; this is a bug in the simulation")
                if t_event == t:
                    _, index, version = heapq.heappop(events)
                    r = replicas[index]
                    if version == -1:
                        if r.removed_at > t:
                            while gateway:
                                route(gateway.popleft(), t)
                    elif version == r.version:
                        run_events(r, t)
                elif t_arrival == t:
                    route(i, t)
                    i += 1
                else:
                    still = []
                    for r in active:
                        if r.gone <= t:
                            totals[0] += r.prompt_done
                            totals[1] += r.generated
                        else:
                            still.append(r)
                    active = still
                    serving = [r for r in active if r.ready_at <= t]
                    signals.scrape(
                        t + offset,
                        float(len(gateway) + sum(len(r.waiting) for r in serving)),
                        float(sum(r.running() for r in serving)),
                        sum(r.kv_reserved for r in serving) / (kv_cap * len(serving)) if serving else 0.0,
                        totals[0] + sum(r.prompt_done + r.rate_prefill * (t - r.last) for r in active),
                        totals[1]
                        + sum(r.generated + r.rate_decode * len(r.decode) * (t - r.last) for r in active),
                        float(i),
                    )
                    next_scrape += scrape
            if until == INF:
                break
            if wanted is not None:
                if wanted != self.spec:
                    self.scale_events += 1
                self.spec = wanted
                if wanted > len(pods):
                    for _ in range(wanted - len(pods)):
                        add_pod(until, until + max(0.0, float(cold_start())))
                elif wanted < len(pods):
                    remove_pods(len(pods) - wanted, until)
                self.tick_at.append(until)
                self.tick_ready.append(sum(1 for r in pods if r.ready_at <= until))
                self.tick_provisioned.append(len(pods))
            until, wanted = yield
        billed = 0.0
        drained = []
        for r in replicas:
            end = r.gone if r.removed_at < INF else INF
            billed += max(0.0, min(end, horizon) - min(r.created, horizon))
            if r.draining:
                drained.append((r.index, max(0.0, r.gone - r.removed_at)))
        return ServingRun(
            "",
            np.asarray(replica_of, dtype=np.int64),
            np.asarray(admitted),
            np.asarray(first_token),
            np.asarray(finished),
            np.asarray(self.tick_at),
            np.asarray(self.tick_ready, dtype=np.int64),
            np.asarray(self.tick_provisioned, dtype=np.int64),
            np.asarray([r.ready_at for r in replicas]),
            billed * profile.gpus_per_replica / 3600.0,
            self.scale_events,
            tuple(drained),
        )


def serve(
    policy: LlmAutoscaler,
    trace: RequestTrace,
    profile: ServingProfile,
    settings: ServingSettings,
    cold_start: Callable[[], float],
    rate_metrics: MetricsPipeline,
    signals: LlmSignals | None = None,
) -> ServingRun:
    """Run the trace through a cluster scaled by a ticked `policy`; `rate_metrics` is the
    MetricsPipeline of arrivals (ClusterView.metrics). Ticks run over the trace span; after it
    the cluster keeps its size and serves until every request has finished."""
    cluster = ServingCluster(trace, profile, settings, cold_start, signals)
    tick = policy.tick_seconds
    for k in range(math.ceil(trace.duration_seconds / tick)):
        t = k * tick
        view = LlmClusterView(
            t + trace.start_seconds,
            cluster.spec,
            cluster.status_replicas,
            cluster.ready_replicas(t),
            rate_metrics,
            cluster.signals,
        )
        cluster.scale(t, policy.step(view))
    return cluster.finish(policy.name)

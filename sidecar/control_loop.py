"""The control loop: per workload and per tick, read -> refit when due -> decide -> publish.

`tick()` is one pass over every workload, run concurrently, each under its own timeout so one
workload's slow query or exception never holds up another; `run()` schedules it every
`tick_seconds` until asked to stop, and always finishes the tick in progress (SIGTERM drains).

Fitting runs in an executor and is picked up by a later tick, so a model that takes 30 s to fit
never delays a decision; until it lands the previous model (or none: reactive only) is used.
A signal whose query fails keeps its last good `Reading`, so its age keeps growing and the core
holds the replica count once the reading is stale, instead of seeing a made-up value.
"""

from __future__ import annotations

import asyncio
import logging
import math
import zlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Protocol

import numpy as np

from autoscaler.capacity import (
    CapacityEstimate,
    CapacityEvidence,
    capacity_pair,
    estimate_capacity,
    record_pair,
)
from autoscaler.decision import Decision, DecisionState
from autoscaler.observations import Histogram, Observations, Reading, Signal
from autoscaler.policy import ScalingPolicy
from autoscaler.prewarm import scaling_goal
from forecasting.forecast import Forecast
from forecasting.model import FittedForecaster, Forecaster, ScalingGoal
from forecasting.series import LoadSeries
from sidecar.budgets import read_budget
from sidecar.clock import Clock, sleep_unless_stopped
from sidecar.latest_decisions import LatestDecisions, PublishedDecision
from sidecar.logs import WorkloadLogger, log_decision_change, workload_logger
from sidecar.prometheus_reader import QuerySource, render_query
from sidecar.settings import LoopSettings, WorkloadSettings

log = logging.getLogger(__name__)

# Signals whose query answers one series per bucket, read through SignalReader.histogram.
HISTOGRAM_SIGNALS = frozenset({Signal.TTFT_HISTOGRAM})


class SignalReader(Protocol):
    async def instant(self, query: str, at: float) -> Reading | None: ...

    async def histogram(self, query: str, at: float) -> Histogram | None:
        """A `sum by (le)` vector as one histogram (the signals in HISTOGRAM_SIGNALS)."""
        ...

    async def history(
        self, query: str, start: float, end: float, step_seconds: float
    ) -> LoadSeries | None: ...


@dataclass(frozen=True, slots=True)
class ReplicaCount:
    """The scale target's spec.replicas and its ready pods."""

    spec: int
    ready: int | None


class ReplicaReader(Protocol):
    async def read_replicas(self, namespace: str, kind: str, name: str) -> ReplicaCount | None: ...


class ColdStartSource(Protocol):
    def cold_start_seconds(self, namespace: str, workload: str) -> float | None:
        """The learned create->Ready time, None until enough pods were seen."""
        ...


class DecideFunction(Protocol):
    def __call__(
        self,
        now: float,
        observations: Observations,
        forecast: Forecast | None,
        policy: ScalingPolicy,
        state: DecisionState,
    ) -> tuple[Decision, DecisionState]: ...


ModelRegistry = Mapping[str, Callable[[], Forecaster]]


@dataclass(frozen=True, slots=True)
class LoopPorts:
    """Everything the loop talks to. `replicas` and `cold_starts` are absent without a cluster;
    `executor` None means the event loop's default thread pool."""

    signals: SignalReader
    decide: DecideFunction
    models: ModelRegistry
    latest: LatestDecisions
    clock: Clock
    executor: Executor | None = None
    replicas: ReplicaReader | None = None
    cold_starts: ColdStartSource | None = None


@dataclass
class WorkloadRuntime:
    """The loop's own mutable record of one workload between ticks. Nothing outside this module
    reads it: they get a `WorkloadStatus`. `readings` is replaced, never mutated, so a status can
    share it."""

    settings: WorkloadSettings
    policy: ScalingPolicy
    queries: dict[Signal, str]
    logger: WorkloadLogger
    history: LoadSeries | None = None
    history_read_at: float | None = None
    history_read: asyncio.Task[LoadSeries | None] | None = None
    history_requested_at: float | None = None
    fitted: FittedForecaster | None = None
    fitted_at: float | None = None
    refit: asyncio.Future[FittedForecaster] | None = None
    refit_started_at: float | None = None
    decision_state: DecisionState = field(default_factory=DecisionState)
    readings: dict[Signal, Reading] = field(default_factory=dict)
    histograms: dict[Signal, Histogram] = field(default_factory=dict)
    capacity_evidence: CapacityEvidence = field(default_factory=CapacityEvidence)
    published: PublishedDecision | None = None
    consecutive_failures: int = 0
    last_error: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.settings.namespace, self.settings.name)

    def refit_interval_seconds(self, settings: LoopSettings) -> float:
        """The configured interval, spread by up to +-10 % per workload (a stable hash of its
        name): workloads that started together otherwise re-read history and refit together
        every interval, 1,000 fits at once queued ahead of everything else."""
        phase = zlib.crc32("/".join(self.key).encode()) / 2**32
        return settings.refit_interval_seconds * (0.9 + 0.2 * phase)


# What a reload invalidates: a new load query makes the history another series, a new model makes
# the fit (and one in flight) another model's, new queries or targets the capacity evidence
# another's. Everything else a runtime carries survives.
_HISTORY_FIELDS = ("history", "history_read_at", "history_read", "history_requested_at")
_MODEL_FIELDS = ("fitted", "fitted_at", "refit", "refit_started_at")


@dataclass(frozen=True, slots=True)
class WorkloadStatus:
    """One workload as the loop last left it, for the readers outside the loop (readiness,
    telemetry, the state store, pre-warm, pod watches): a snapshot taken on request, so they
    never see a tick half done nor change what the next tick uses."""

    settings: WorkloadSettings
    policy: ScalingPolicy
    readings: Mapping[Signal, Reading]
    published: PublishedDecision | None
    decision_state: DecisionState
    history: LoadSeries | None
    history_read_at: float | None
    fitted: FittedForecaster | None
    fitted_at: float | None
    consecutive_failures: int
    last_error: str | None
    reading_history: bool
    refitting: bool

    @property
    def key(self) -> tuple[str, str]:
        return (self.settings.namespace, self.settings.name)


def _status(runtime: WorkloadRuntime) -> WorkloadStatus:
    return WorkloadStatus(
        settings=runtime.settings,
        policy=runtime.policy,
        readings=MappingProxyType(runtime.readings),
        published=runtime.published,
        decision_state=runtime.decision_state,
        history=runtime.history,
        history_read_at=runtime.history_read_at,
        fitted=runtime.fitted,
        fitted_at=runtime.fitted_at,
        consecutive_failures=runtime.consecutive_failures,
        last_error=runtime.last_error,
        reading_history=runtime.history_read is not None,
        refitting=runtime.refit is not None,
    )


def workload_queries(settings: WorkloadSettings) -> dict[Signal, str]:
    """The workload's PromQL per configured signal, placeholders filled with its escaped values."""
    values = {"namespace": settings.namespace, "workload": settings.name, **settings.labels}
    return {
        signal: render_query(template, values)
        for signal in Signal
        if (template := getattr(settings.queries, signal)) is not None
    }


def build_runtime(settings: WorkloadSettings) -> WorkloadRuntime:
    return WorkloadRuntime(
        settings=settings,
        policy=settings.to_policy(),
        queries=workload_queries(settings),
        logger=workload_logger(settings.namespace, settings.name),
    )


def _carried_over(old: WorkloadRuntime, fresh: WorkloadRuntime) -> WorkloadRuntime:
    """`old` under `fresh`'s settings: decision state, failures and the last published decision
    stay; readings stay for the queries that did not change (/readyz would otherwise fail until
    the next tick); history and the model stay unless what they were made from changed."""
    carried = replace(
        old,
        settings=fresh.settings,
        policy=fresh.policy,
        queries=fresh.queries,
        logger=fresh.logger,
        readings={
            signal: reading
            for signal, reading in old.readings.items()
            if old.queries.get(signal) == fresh.queries.get(signal)
        },
        histograms={
            signal: histogram
            for signal, histogram in old.histograms.items()
            if old.queries.get(signal) == fresh.queries.get(signal)
        },
    )
    if old.settings.queries.load != fresh.settings.queries.load:
        _cancel_history_read(old)
        carried = replace(carried, **{name: getattr(fresh, name) for name in _HISTORY_FIELDS})
    if old.settings.forecast.model != fresh.settings.forecast.model:
        carried = replace(carried, **{name: getattr(fresh, name) for name in _MODEL_FIELDS})
    # Pairs are judged saturated by the queries and targets: new ones make the old evidence moot.
    if (old.settings.queries, old.settings.policy_targets()) != (
        fresh.settings.queries,
        fresh.settings.policy_targets(),
    ):
        carried = replace(carried, capacity_evidence=fresh.capacity_evidence)
    return carried


@dataclass(frozen=True, slots=True)
class TickReport:
    """What one tick did: duration in loop seconds and the workloads that failed (with why)."""

    at: float
    duration_seconds: float
    published: int
    failed: dict[tuple[str, str], str]


class ControlLoop:
    def __init__(
        self, *, workloads: Iterable[WorkloadSettings], settings: LoopSettings, ports: LoopPorts
    ) -> None:
        self.settings = settings
        self.ports = ports
        self._runtimes: dict[tuple[str, str], WorkloadRuntime] = {}
        self._ticking = False
        self._pending: tuple[tuple[WorkloadSettings, ...], LoopSettings] | None = None
        self._query_sources: dict[str, QuerySource] = {}
        self.reconfigure(workloads, settings)

    def statuses(self) -> dict[tuple[str, str], WorkloadStatus]:
        """Every configured workload as the last tick left it."""
        return {key: _status(runtime) for key, runtime in self._runtimes.items()}

    def status(self, namespace: str, name: str) -> WorkloadStatus | None:
        runtime = self._runtimes.get((namespace, name))
        return _status(runtime) if runtime is not None else None

    def restore(
        self,
        key: tuple[str, str],
        decision_state: DecisionState,
        fitted: FittedForecaster | None,
        fitted_at: float | None,
    ) -> bool:
        """Resume a workload from saved state (before the first tick); False when it is not
        configured. The caller checks that a saved fit is of the configured model."""
        runtime = self._runtimes.get(key)
        if runtime is None:
            return False
        runtime.decision_state = decision_state
        if fitted is not None:
            runtime.fitted, runtime.fitted_at = fitted, fitted_at
        return True

    async def settle(self) -> None:
        """Wait for the history reads and fits in flight (their failures are the next tick's to
        report): a replay, a benchmark and a test use it to reach a known state."""
        pending = [
            work
            for runtime in self._runtimes.values()
            for work in (runtime.history_read, runtime.refit)
            if work is not None
        ]
        await asyncio.gather(*pending, return_exceptions=True)

    def query_source(self, query: str) -> QuerySource | None:
        """The workload and signal a rendered query belongs to (the first, if two share it)."""
        return self._query_sources.get(query)

    def reconfigure(self, workloads: Iterable[WorkloadSettings], settings: LoopSettings) -> None:
        """Apply new settings: unchanged workloads keep their history, model and state; changed
        ones keep history and decision state but rebuild queries and policy; removed ones stop
        being published. During a tick the change waits for its end: a workload's tick still in
        flight would otherwise publish a removed workload again, or its state would miss the
        replacement."""
        if self._ticking:
            self._pending = (tuple(workloads), settings)
            return
        self.settings = settings
        wanted = {(w.namespace, w.name): w for w in workloads}
        for key in [k for k in self._runtimes if k not in wanted]:
            _cancel_history_read(self._runtimes.pop(key))
            self.ports.latest.remove(*key)
        for key, workload in wanted.items():
            old = self._runtimes.get(key)
            if old is None:
                self._runtimes[key] = build_runtime(workload)
            elif old.settings != workload:
                self._runtimes[key] = _carried_over(old, build_runtime(workload))
        self._query_sources = {}
        for (namespace, name), runtime in self._runtimes.items():
            for signal, query in runtime.queries.items():
                self._query_sources.setdefault(query, QuerySource(namespace, name, signal))

    async def run(
        self, stop: asyncio.Event, on_tick: Callable[[TickReport], Awaitable[None]] | None = None
    ) -> None:
        """Tick every `tick_seconds` (from the start of one tick to the next) until `stop` is
        set; the tick in progress always completes. `on_tick` runs after each tick (health,
        pre-warm, a simulated cluster); its failure is logged and does not stop the loop."""
        while not stop.is_set():
            report = await self.tick()
            if on_tick is not None:
                try:
                    await on_tick(report)
                except Exception:  # an after-tick hook must not stop the decisions
                    log.exception("after-tick hook failed")
            remaining = self.settings.tick_seconds - (self.ports.clock.now() - report.at)
            if remaining > 0:
                await sleep_unless_stopped(self.ports.clock, remaining, stop)

    async def tick(self) -> TickReport:
        now = self.ports.clock.now()
        runtimes = list(self._runtimes.values())
        self._ticking = True
        try:
            outcomes = await asyncio.gather(*(self._guarded_tick(now, runtime) for runtime in runtimes))
        finally:
            self._ticking = False
            pending, self._pending = self._pending, None
            if pending is not None:
                self.reconfigure(*pending)
        failed = {r.key: error for r, error in zip(runtimes, outcomes, strict=True) if error is not None}
        return TickReport(
            at=now,
            duration_seconds=self.ports.clock.now() - now,
            published=len(runtimes) - len(failed),
            failed=failed,
        )

    async def _guarded_tick(self, now: float, runtime: WorkloadRuntime) -> str | None:
        """One workload's tick; an exception or timeout is logged and returned, never raised, so
        the previous published decision stays (and ages) instead of the loop stopping."""
        try:
            async with asyncio.timeout(self.settings.workload_timeout_seconds):
                await tick_once(now, runtime, self.settings, self.ports)
        except Exception as error:  # one workload's bug must not stall the others
            message = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            runtime.consecutive_failures += 1
            runtime.last_error = message
            runtime.logger.exception("tick failed", extra={"failures": runtime.consecutive_failures})
            return message
        runtime.consecutive_failures = 0
        return None


async def tick_once(
    now: float, runtime: WorkloadRuntime, settings: LoopSettings, ports: LoopPorts
) -> PublishedDecision:
    """Read every signal, fold the load into the history, refit when due, decide, publish."""
    workload = runtime.settings
    names = [signal for signal in runtime.queries if signal not in HISTOGRAM_SIGNALS]
    histogram_names = [signal for signal in runtime.queries if signal in HISTOGRAM_SIGNALS]
    reads = [ports.signals.instant(runtime.queries[name], now) for name in names]
    histogram_reads = [ports.signals.histogram(runtime.queries[name], now) for name in histogram_names]
    replica_read = (
        _read_replicas_within(read_budget(settings.workload_timeout_seconds), runtime, ports.replicas)
        if ports.replicas is not None
        else _none()
    )
    *answers, replicas = await asyncio.gather(*reads, *histogram_reads, replica_read)
    readings, histograms = answers[: len(names)], answers[len(names) :]
    fresh = {name: reading for name, reading in zip(names, readings, strict=True) if reading is not None}
    if fresh:
        runtime.readings = {**runtime.readings, **fresh}
    fresh_histograms = {
        name: answer for name, answer in zip(histogram_names, histograms, strict=True) if answer is not None
    }
    if fresh_histograms:
        runtime.histograms = {**runtime.histograms, **fresh_histograms}

    await _refresh_history(now, runtime, settings, ports.signals)
    if runtime.history is not None and (load := runtime.readings.get(Signal.LOAD)) is not None:
        runtime.history = append_reading(runtime.history, load, settings.history_seconds)
    _collect_refit(runtime)
    _start_refit_when_due(now, runtime, settings, ports)
    forecast = _predict(runtime, settings)

    observations = Observations(
        at=now,
        current_replicas=replicas.spec if replicas else _last_replicas(runtime),
        ready_replicas=replicas.ready if replicas else None,
        load=runtime.readings.get(Signal.LOAD),
        p99_latency=runtime.readings.get(Signal.P99_LATENCY),
        queue_depth=runtime.readings.get(Signal.QUEUE_DEPTH),
        gpu_utilization=runtime.readings.get(Signal.GPU_UTILIZATION),
        kv_cache_utilization=runtime.readings.get(Signal.KV_CACHE_UTILIZATION),
        ttft=runtime.readings.get(Signal.TTFT),
        ttft_histogram=runtime.histograms.get(Signal.TTFT_HISTOGRAM),
        cold_start_seconds=_cold_start(runtime, ports.cold_starts),
    )
    runtime.capacity_evidence = record_pair(
        runtime.capacity_evidence, capacity_pair(now, observations, runtime.policy)
    )
    learned = estimate_capacity(runtime.capacity_evidence)
    policy = _policy_with_capacity(runtime.policy, learned)
    decision, runtime.decision_state = ports.decide(
        now, observations, forecast, policy, runtime.decision_state
    )
    published = PublishedDecision(
        namespace=workload.namespace,
        workload=workload.name,
        decision=decision,
        observations=observations,
        published_at=now,
        forecast=forecast,
        labels={"namespace": workload.namespace, "workload": workload.name, **workload.labels},
        cost_basis=replace(workload.cost_basis(), replica_capacity_rps=policy.replica_capacity_rps),
        learned_capacity=learned,
    )
    ports.latest.publish(published)
    log_decision_change(runtime.logger, runtime.published, published)
    runtime.published = published
    return published


def _policy_with_capacity(policy: ScalingPolicy, learned: CapacityEstimate | None) -> ScalingPolicy:
    """The settings' capacity when they give one (the learned one is then only reported), else the
    learned one, else none: decide() then scales on the reactive signals alone."""
    if policy.replica_capacity_rps is not None or learned is None:
        return policy
    return replace(policy, replica_capacity_rps=learned.per_replica, capacity_learned=True)


async def _none() -> None:
    return None


async def _read_replicas_within(
    seconds: float, runtime: WorkloadRuntime, replicas: ReplicaReader
) -> ReplicaCount | None:
    """The replica count, or None (held: a missing count never scales down) when the reader
    gives no answer within `seconds` (sidecar.budgets: below the workload timeout)."""
    workload = runtime.settings
    try:
        async with asyncio.timeout(seconds):
            return await replicas.read_replicas(
                workload.namespace, workload.target.kind, workload.target_name
            )
    except TimeoutError:
        runtime.logger.warning("replica read gave no answer in time", extra={"budget_seconds": seconds})
        return None


def _last_replicas(runtime: WorkloadRuntime) -> int | None:
    # Without a cluster reader (replay, or Kubernetes disabled) the count we published last is
    # what HPA converges to; before the first decision it is unknown.
    return runtime.published.decision.replicas if runtime.published else None


def _cold_start(runtime: WorkloadRuntime, cold_starts: ColdStartSource | None) -> float | None:
    if runtime.settings.cold_start_seconds is not None:
        return runtime.settings.cold_start_seconds
    return cold_starts.cold_start_seconds(*runtime.key) if cold_starts is not None else None


async def _refresh_history(
    now: float, runtime: WorkloadRuntime, settings: LoopSettings, signals: SignalReader
) -> None:
    """Read the full history at start and again before each refit, so gaps filled in
    Prometheus since (a restarted scrape, a late remote-write) reach the model.

    The read is a task of its own that a tick waits for at most half the workload timeout: a
    week of history is several range queries, and a slow Prometheus would otherwise time out
    every tick before a decision, forever. Past that, the tick decides on what it has and a
    later tick takes the history (live readings appended meanwhile are in Prometheus too, and
    come back with the next read)."""
    interval = runtime.refit_interval_seconds(settings)
    if runtime.history_read is None:
        due = runtime.history_read_at is None or now - runtime.history_read_at >= interval
        if not due:
            return
        runtime.history_read = asyncio.ensure_future(
            signals.history(
                runtime.queries[Signal.LOAD],
                now - settings.history_seconds,
                now,
                settings.history_step_seconds,
            )
        )
        runtime.history_requested_at = now
    read = runtime.history_read
    done, _ = await asyncio.wait({read}, timeout=settings.workload_timeout_seconds / 2)
    if not done:
        return
    runtime.history_read = None
    history = None if read.cancelled() or read.exception() is not None else read.result()
    if not read.cancelled() and read.exception() is not None:
        runtime.logger.warning("history read failed", extra={"error": repr(read.exception())})
    if history is not None:
        runtime.history, runtime.history_read_at = history, runtime.history_requested_at
        return
    # Prometheus down or no data yet: retry in four ticks, not every tick; live readings keep
    # filling the grid meanwhile (an empty one when there was no history at all).
    runtime.history_read_at = now - interval + 4 * settings.tick_seconds
    if runtime.history is None:
        step = settings.history_step_seconds
        runtime.history = LoadSeries(
            start=math.floor(now / step) * step, step_seconds=step, values=np.empty(0)
        )


def _cancel_history_read(runtime: WorkloadRuntime) -> None:
    if runtime.history_read is not None:
        runtime.history_read.cancel()


def append_reading(history: LoadSeries, reading: Reading, history_seconds: float) -> LoadSeries:
    """Put a live reading into the step it describes and keep at most `history_seconds`.

    A reading at time t is a rate over the window before t, so it lands in the step holding
    t - step/2: with 60 s steps starting at 0, a reading at t=130 describes about [70, 130) and
    goes to [60, 120), index 1 (130 - 30 = 100). The newest reading in a step wins.
    """
    step = history.step_seconds
    index = math.floor((reading.observed_at - step / 2 - history.start) / step)
    if index < 0:
        return history
    values = history.values
    start = history.start
    if index >= len(values):
        values = np.concatenate([values, np.full(index - len(values) + 1, np.nan)])
    else:
        values = values.copy()
    values[index] = reading.value
    keep = max(1, int(history_seconds // step))
    if len(values) > keep:
        start += (len(values) - keep) * step
        values = values[-keep:]
    return LoadSeries(start=start, step_seconds=step, values=values)


def _collect_refit(runtime: WorkloadRuntime) -> None:
    refit = runtime.refit
    if refit is None or not refit.done():
        return
    runtime.refit = None
    if refit.cancelled():
        return
    error = refit.exception()
    if error is not None:
        runtime.logger.warning("refit failed; keeping the previous model", extra={"error": repr(error)})
        runtime.fitted_at = runtime.refit_started_at  # try again after a full interval, not every tick
        return
    runtime.fitted = refit.result()
    runtime.fitted_at = runtime.refit_started_at


def _start_refit_when_due(
    now: float, runtime: WorkloadRuntime, settings: LoopSettings, ports: LoopPorts
) -> None:
    if runtime.refit is not None or runtime.history is None or not len(runtime.history.values):
        return
    if runtime.fitted_at is not None and now - runtime.fitted_at < runtime.refit_interval_seconds(settings):
        return
    constructor = ports.models.get(runtime.settings.forecast.model)
    if constructor is None:
        raise LookupError(f"unknown forecast model {runtime.settings.forecast.model!r}")
    history = runtime.history
    runtime.refit_started_at = now
    horizon_steps = _horizon_steps(history, settings)
    goal = scaling_goal(runtime.policy, _cold_start(runtime, ports.cold_starts))
    runtime.refit = asyncio.get_running_loop().run_in_executor(
        ports.executor, _fit_and_predict_once, constructor, history, horizon_steps, runtime.policy, goal
    )


def _fit_and_predict_once(
    constructor: Callable[[], Forecaster],
    history: LoadSeries,
    horizon_steps: int,
    policy: ScalingPolicy,
    goal: ScalingGoal | None,
) -> FittedForecaster:
    """Construct, fit, then predict once with the quantiles every tick asks for, in the executor.
    Constructing there keeps a model's first import (LightGBM, statsmodels: seconds) off the event
    loop, and a broken install is a failed refit (reactive decisions go on), not a failed tick. A
    model's first prediction fills its caches (residual quantiles), which for 1,000 models refitted
    together took a whole second off the event loop."""
    fitted = constructor().fit(history, goal)
    fitted.predict(history, horizon_steps, policy.forecast_quantiles)
    return fitted


def _horizon_steps(history: LoadSeries, settings: LoopSettings) -> int:
    return max(1, math.ceil(settings.forecast_horizon_seconds / history.step_seconds))


def _predict(runtime: WorkloadRuntime, settings: LoopSettings) -> Forecast | None:
    """Forecast from the newest history with the last fitted model; None (reactive only) when
    there is no model yet or it fails, which the core treats as "no forecast", never as 0."""
    if runtime.fitted is None or runtime.history is None:
        return None
    horizon_steps = _horizon_steps(runtime.history, settings)
    try:
        return runtime.fitted.predict(runtime.history, horizon_steps, runtime.policy.forecast_quantiles)
    except Exception:  # a model bug degrades to reactive scaling, it does not stop the workload
        runtime.logger.exception("predict failed; deciding without a forecast")
        return None

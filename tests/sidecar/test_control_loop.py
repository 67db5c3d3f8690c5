"""The control loop on a FakeClock with in-memory ports: publication, isolation of failures,
held decisions on missing data, refits in an executor, cadence and draining, reconfiguration."""

from __future__ import annotations

import asyncio
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import pytest

from autoscaler.decision import Reason
from autoscaler.observations import Histogram, Reading
from autoscaler.policy import OBJECTIVE_QUANTILES
from forecasting.model import ScalingGoal
from forecasting.series import LoadSeries
from sidecar.control_loop import ControlLoop, LoopPorts, ReplicaCount, append_reading, build_runtime
from sidecar.core import load_core
from sidecar.latest_decisions import LatestDecisions
from sidecar.settings import LoopSettings, QuerySettings, WorkloadSettings
from tests.fakes import FakeClock, FlatForecaster, ScriptedSignals, proportional_decide

START = 1_700_000_000.0


def workload(name: str, **overrides) -> WorkloadSettings:
    fields = {
        "name": name,
        "namespace": "ml",
        "queries": QuerySettings(load='load{workload="$workload"}'),
        "replica_capacity_rps": 10.0,
        "target_utilization": 1.0,
        "max_replicas": 50,
        "stale_after_seconds": 60.0,
        "forecast": {"model": "flat"},
        **overrides,
    }
    return WorkloadSettings(**fields)


def query(name: str) -> str:
    return f'load{{workload="{name}"}}'


class Harness:
    def __init__(self, names=("llama", "mistral"), clock: FakeClock | None = None, **loop_overrides) -> None:
        self.clock = clock or FakeClock(START)
        self.signals = ScriptedSignals()
        self.latest = LatestDecisions()
        self.forecaster = FlatForecaster()
        self.executor = ThreadPoolExecutor(max_workers=1)
        settings = {
            "tick_seconds": 15,
            "refit_interval_seconds": 3600,
            "history_seconds": 3600,
            **loop_overrides,
        }
        self.loop = ControlLoop(
            workloads=[workload(n) for n in names],
            settings=LoopSettings(**settings),
            ports=LoopPorts(
                signals=self.signals,
                decide=proportional_decide,
                models={"flat": lambda: self.forecaster},
                latest=self.latest,
                clock=self.clock,
                executor=self.executor,
            ),
        )

    def replicas(self, name: str) -> int:
        item = self.latest.get("ml", name)
        assert item is not None, f"{name} was never published"
        return item.decision.replicas


@pytest.fixture
def harness():
    h = Harness()
    yield h
    h.executor.shutdown(wait=True)


async def test_every_workload_is_published_with_its_labels(harness):
    harness.signals.values = {query("llama"): lambda t: 42.0, query("mistral"): lambda t: 5.0}
    report = await harness.loop.tick()
    assert report.failed == {} and report.published == 2
    assert harness.replicas("llama") == 5  # ceil(42 / 10)
    assert harness.replicas("mistral") == 1
    item = harness.latest.get("ml", "llama")
    assert item is not None and dict(item.labels) == {"namespace": "ml", "workload": "llama"}
    assert item.published_at == START and item.observations.load == Reading(42.0, START)


async def test_one_failing_workload_does_not_stall_the_other(harness):
    harness.signals.values = {query("llama"): lambda t: 42.0, query("mistral"): lambda t: 5.0}
    await harness.loop.tick()

    def broken(t: float) -> float:
        raise RuntimeError("adapter bug")

    harness.signals.values = {query("llama"): broken, query("mistral"): lambda t: 25.0}
    harness.clock.advance(15)
    report = await harness.loop.tick()
    assert report.failed == {("ml", "llama"): "RuntimeError: adapter bug"}
    assert harness.replicas("mistral") == 3, "the healthy workload moved on"
    held = harness.latest.get("ml", "llama")
    assert held is not None and held.published_at == START, "the failing one keeps its last decision"
    assert harness.loop.status("ml", "llama").consecutive_failures == 1


async def test_slow_workload_times_out_alone():
    # A second of budget: ample for mistral on a busy machine; llama's query never answers.
    h = Harness(workload_timeout_seconds=1.0)
    h.signals.values = {query("llama"): lambda t: 42.0, query("mistral"): lambda t: 5.0}
    h.signals.gates = {query("llama"): asyncio.Event()}
    report = await h.loop.tick()
    h.executor.shutdown()
    assert report.failed == {("ml", "llama"): "TimeoutError"}
    assert h.replicas("mistral") == 1
    assert h.latest.get("ml", "llama") is None


async def test_a_slow_history_read_delays_the_forecast_not_the_decision():
    h = Harness(names=("llama",), workload_timeout_seconds=2.0)
    h.signals.values = {query("llama"): lambda t: 42.0}
    h.signals.history_values = {query("llama"): lambda t: 40.0}
    h.signals.history_gate = asyncio.Event()  # answers only when released: past the whole budget
    first = await h.loop.tick()
    status = h.loop.status("ml", "llama")
    assert first.failed == {} and h.replicas("llama") == 5, "decided without the history"
    assert status.history is None and status.reading_history
    h.signals.history_gate.set()
    await h.loop.settle()
    h.clock.advance(15)
    second = await h.loop.tick()
    h.executor.shutdown()
    assert second.failed == {}
    status = h.loop.status("ml", "llama")
    assert status.history is not None and np.nanmax(status.history.values) == 42.0
    assert status.history_read_at == START, "the read counts from when it was asked for"
    assert h.signals.history_calls == [query("llama")], "one read, not one per tick"


async def test_a_reconfigure_during_a_tick_applies_after_it(harness):
    harness.signals.values = {query("llama"): lambda t: 42.0, query("mistral"): lambda t: 5.0}
    llama_answers = asyncio.Event()
    harness.signals.gates = {query("llama"): llama_answers}
    tick = asyncio.create_task(harness.loop.tick())
    while harness.signals.instant_calls < 2:  # both workloads' reads are in flight
        await asyncio.sleep(0)
    harness.loop.reconfigure([workload("llama-v2"), workload("mistral")], harness.loop.settings)
    assert ("ml", "llama") in harness.loop.statuses(), "not while the tick is in flight"
    llama_answers.set()
    await tick
    assert set(harness.loop.statuses()) == {("ml", "llama-v2"), ("ml", "mistral")}
    assert harness.latest.get("ml", "llama") is None, "the removed workload is not published again"


async def test_missing_load_keeps_the_last_reading_ageing_and_holds(harness):
    harness.signals.values = {query("llama"): lambda t: 42.0}
    await harness.loop.tick()
    # Prometheus stops answering: the load query now yields nothing.
    harness.signals.values = {}
    ages = []
    for _ in range(6):
        harness.clock.advance(15)
        await harness.loop.tick()
        item = harness.latest.get("ml", "llama")
        assert item is not None and item.observations.load is not None
        ages.append(item.observations.load.age_seconds(harness.clock.now()))
        assert item.decision.replicas == 5, "no scale-down on missing data"
    assert ages == [15, 30, 45, 60, 75, 90]
    assert harness.latest.get("ml", "llama").decision.reason is Reason.HELD_STALE


async def test_a_histogram_query_reaches_the_decision_as_buckets_and_keeps_ageing(harness):
    buckets = 'sum by (le) (rate(ttft_bucket{workload="llama"}[1m]))'
    harness.loop.reconfigure(
        [workload("llama", queries=QuerySettings(load=query("llama"), ttft_histogram=buckets))],
        harness.loop.settings,
    )
    histogram = Histogram((1.0, math.inf), (3.0, 4.0), START - 15)
    harness.signals.values = {query("llama"): lambda t: 42.0}
    harness.signals.histograms = {buckets: lambda t: histogram}
    await harness.loop.tick()
    item = harness.latest.get("ml", "llama")
    assert item is not None and item.observations.ttft_histogram == histogram
    # The histogram stops answering: the last one stays, ageing, as a reading does.
    harness.signals.histograms = {}
    harness.clock.advance(15)
    await harness.loop.tick()
    item = harness.latest.get("ml", "llama")
    assert item is not None and item.observations.ttft_histogram == histogram
    assert histogram.age_seconds(harness.clock.now()) == 30


async def test_refit_runs_in_the_executor_and_is_used_on_a_later_tick(harness):
    harness.signals.history_values = {query("llama"): lambda t: 80.0}
    harness.signals.values = {query("llama"): lambda t: 10.0}
    await harness.loop.tick()
    assert harness.loop.status("ml", "llama").refitting, "a fit was started"
    assert harness.replicas("llama") == 1, "no model yet: reactive only"
    await harness.loop.settle()
    harness.clock.advance(15)
    await harness.loop.tick()
    assert harness.forecaster.fits == 1
    item = harness.latest.get("ml", "llama")
    assert item is not None and item.forecast is not None
    assert (item.decision.replicas, item.decision.reason) == (8, Reason.FORECAST)

    # No second fit inside the refit interval, one after it.
    for _ in range(10):
        harness.clock.advance(15)
        await harness.loop.tick()
    assert not harness.loop.status("ml", "llama").refitting and harness.forecaster.fits == 1
    harness.clock.advance(1.1 * 3600)  # the interval, spread by up to 10 % per workload
    await harness.loop.tick()
    assert harness.loop.status("ml", "llama").refitting
    await harness.loop.settle()
    assert harness.forecaster.fits == 2
    assert harness.signals.history_calls.count(query("llama")) == 2, "history is re-read before each refit"
    # mistral has no history at all: retried every 4 ticks (60 s), not every tick.
    assert harness.signals.history_calls.count(query("mistral")) == 4


async def test_a_refit_is_told_the_workloads_objective_headroom_and_lead(harness):
    harness.signals.history_values = {query("llama"): lambda t: 80.0}
    harness.signals.values = {query("llama"): lambda t: 10.0}
    await harness.loop.tick()
    await harness.loop.settle()
    # The workload's defaults: objective 0.001, target utilization 1.0, no learned cold start
    # (120 s default) plus the 30 s decision delay.
    assert harness.forecaster.goals == [
        ScalingGoal(unserved_share=0.001, headroom=1.0, lead_seconds=150.0, quantiles=OBJECTIVE_QUANTILES)
    ]


async def test_refit_failure_keeps_the_previous_model(harness):
    harness.signals.history_values = {query("llama"): lambda t: 80.0}
    harness.signals.values = {query("llama"): lambda t: 10.0}
    await harness.loop.tick()
    await harness.loop.settle()
    harness.clock.advance(3600)

    def failing_fit(history: LoadSeries):
        raise ValueError("singular matrix")

    harness.forecaster.fit = failing_fit  # the next fit fails
    await harness.loop.tick()
    fitted = harness.loop.status("ml", "llama").fitted
    assert fitted is not None and harness.loop.status("ml", "llama").refitting
    await harness.loop.settle()
    harness.clock.advance(15)
    await harness.loop.tick()
    item = harness.latest.get("ml", "llama")
    assert item is not None and item.decision.reason is Reason.FORECAST, "old model still forecasts"
    assert harness.loop.status("ml", "llama").fitted is fitted


async def test_a_model_whose_library_is_broken_fails_its_refit_not_the_tick(harness, caplog):
    def broken_install():
        raise ImportError("lightgbm: libgomp.so.1: cannot open shared object file")

    harness.loop.ports = replace(harness.loop.ports, models={"flat": broken_install})
    harness.signals.history_values = {query("llama"): lambda t: 80.0}
    harness.signals.values = {query("llama"): lambda t: 42.0, query("mistral"): lambda t: 5.0}
    first = await harness.loop.tick()
    assert first.failed == {} and harness.replicas("llama") == 5
    await harness.loop.settle()
    harness.clock.advance(15)
    second = await harness.loop.tick()
    assert second.failed == {}, "decisions go on, reactive"
    item = harness.latest.get("ml", "llama")
    assert item is not None and item.decision.reason is Reason.LOAD and item.forecast is None
    assert any("refit failed" in r.getMessage() and "libgomp" in repr(r.__dict__) for r in caplog.records)


async def test_run_ticks_on_cadence_and_drains_on_stop(harness):
    harness.signals.values = {query("llama"): lambda t: 42.0, query("mistral"): lambda t: 5.0}
    stop = asyncio.Event()
    seen: list[float] = []
    original = harness.loop.tick

    async def counted():
        report = await original()
        seen.append(report.at)
        if len(seen) == 4:
            stop.set()
        return report

    harness.loop.tick = counted
    await asyncio.wait_for(harness.loop.run(stop), timeout=60)
    assert seen == [START, START + 15, START + 30, START + 45]


@pytest.mark.parametrize(
    ("observed_at", "expected_len", "expected_start", "index", "value"),
    [
        pytest.param(130.0, 3, 0.0, 1, 7.0, id="130 s describes [70,130): step [60,120)"),
        pytest.param(300.0, 5, 0.0, 4, 7.0, id="a later step grows the grid with NaN between"),
        pytest.param(20.0, 3, 0.0, 0, 1.0, id="too early for the grid: ignored"),
        pytest.param(630.0, 5, 360.0, 4, 7.0, id="over history_seconds: oldest steps drop"),
    ],
)
def test_append_reading(observed_at, expected_len, expected_start, index, value):
    history = LoadSeries(start=0.0, step_seconds=60.0, values=np.array([1.0, 2.0, 3.0]))
    grown = append_reading(history, Reading(7.0, observed_at), history_seconds=300.0)
    assert (len(grown.values), grown.start) == (expected_len, expected_start)
    assert grown.values[index] == value
    assert history.values.tolist() == [1.0, 2.0, 3.0], "the input series is not modified"


async def test_reconfigure_keeps_unchanged_state_and_unpublishes_removed(harness):
    harness.signals.values = {query("llama"): lambda t: 42.0, query("mistral"): lambda t: 5.0}
    await harness.loop.tick()
    before = harness.loop.status("ml", "llama")
    harness.loop.reconfigure([workload("llama"), workload("phi")], harness.loop.settings)
    assert harness.loop.status("ml", "llama") == before
    assert harness.latest.get("ml", "mistral") is None
    assert set(harness.loop.statuses()) == {("ml", "llama"), ("ml", "phi")}

    harness.loop.reconfigure([workload("llama", max_replicas=3)], harness.loop.settings)
    changed = harness.loop.status("ml", "llama")
    assert changed.policy.max_replicas == 3 and before.policy.max_replicas != 3
    assert changed.decision_state == before.decision_state and changed.history is before.history
    assert changed.readings == before.readings, "same queries: the last readings stay (readiness)"
    harness.clock.advance(15)
    await harness.loop.tick()
    assert harness.replicas("llama") == 3
    assert math.isclose(harness.loop.settings.tick_seconds, 15)


LOAD = QuerySettings(load='rate(requests_total{workload="$workload"}[1m])')


def test_refit_intervals_spread_within_ten_percent_and_stay_put(harness):
    intervals = [
        build_runtime(
            WorkloadSettings(name=f"w{i}", namespace="ml", queries=LOAD, replica_capacity_rps=10.0)
        ).refit_interval_seconds(harness.loop.settings)
        for i in range(200)
    ]
    assert all(3240 <= interval <= 3960 for interval in intervals)
    assert max(intervals) - min(intervals) > 600, "spread over most of the band"
    same = WorkloadSettings(name="w7", namespace="ml", queries=LOAD, replica_capacity_rps=10.0)
    assert build_runtime(same).refit_interval_seconds(harness.loop.settings) == intervals[7], "stable"


class FixedReplicas:
    """A scale target that stays at `count` ready pods whatever is published."""

    def __init__(self, count: int) -> None:
        self.count = count

    async def read_replicas(self, namespace: str, kind: str, name: str) -> ReplicaCount:
        return ReplicaCount(spec=self.count, ready=self.count)


def _learning_loop(capacity: float | None) -> tuple[ControlLoop, ScriptedSignals, LatestDecisions, FakeClock]:
    """4 ready pods whose queue grows (over 2 per pod) once the load passes 6 rps per pod, the
    load sweeping 2..10 rps per pod and back; the real decide()."""
    clock = FakeClock(START)
    signals = ScriptedSignals()
    latest = LatestDecisions()
    settings = workload(
        "llama",
        replica_capacity_rps=capacity,
        queries=QuerySettings(load=query("llama"), queue_depth='waiting{workload="$workload"}'),
        queue_depth_target_per_replica=2.0,
    )
    per_pod = lambda t: 2.0 + 8.0 * abs(math.sin((t - START) / 3000.0))  # noqa: E731
    signals.values = {
        query("llama"): lambda t: 4 * per_pod(t),
        'waiting{workload="llama"}': lambda t: 4 * (20.0 if per_pod(t) > 6.0 else 1.0),
    }
    loop = ControlLoop(
        workloads=[settings],
        settings=LoopSettings(tick_seconds=15, history_seconds=3600),
        ports=LoopPorts(
            signals=signals,
            decide=load_core().decide,
            models={"flat": FlatForecaster},
            latest=latest,
            clock=clock,
            replicas=FixedReplicas(4),
        ),
    )
    return loop, signals, latest, clock


async def test_a_workload_without_capacity_learns_one_uses_it_and_says_so():
    loop, signals, latest, clock = _learning_loop(None)
    first = None
    for _ in range(400):
        await loop.tick()
        item = latest.get("ml", "llama")
        assert item is not None
        if item.learned_capacity is None:
            # Until both sides have evidence, the reactive queue alone decides.
            assert item.decision.reason not in (Reason.LOAD, Reason.LOAD_LEARNED_CAPACITY)
        elif first is None:
            first = clock.now() - START
        clock.advance(15)
    assert first is not None, "a capacity was learned"
    learned = item.learned_capacity
    assert learned is not None and learned.per_replica == pytest.approx(6.0, rel=0.03)
    # 40 rps on 4 pods at 6 rps each (utilization 1.0) needs 7: the learned capacity binds.
    signals.values = {query("llama"): lambda t: 40.0, 'waiting{workload="llama"}': lambda t: 0.0}
    await loop.tick()
    item = latest.get("ml", "llama")
    assert item is not None
    assert (item.decision.replicas, item.decision.reason) == (7, Reason.LOAD_LEARNED_CAPACITY)
    assert item.cost_basis is not None and item.cost_basis.replica_capacity_rps == learned.per_replica


async def test_a_configured_capacity_wins_over_the_learned_one():
    loop, signals, latest, clock = _learning_loop(10.0)
    for _ in range(400):
        await loop.tick()
        clock.advance(15)
    signals.values = {query("llama"): lambda t: 60.0, 'waiting{workload="llama"}': lambda t: 0.0}
    await loop.tick()
    item = latest.get("ml", "llama")
    assert item is not None and item.learned_capacity is not None, "learned and reported"
    # ...but the settings' 10 rps per replica decides: 60 rps -> 6, said as plain load.
    assert (item.decision.replicas, item.decision.reason) == (6, Reason.LOAD)

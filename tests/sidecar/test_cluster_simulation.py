"""`serve --replay`: the trace reader, the trace-as-Prometheus, the simulated cluster, and the
whole service run over a short trace with an accelerated clock: the external metrics API, the
KEDA gRPC scaler and /metrics all answer, with no cluster and no Prometheus."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import aiohttp
import grpc
import numpy as np
import pytest

from autoscaler.decision import Decision, Reason
from autoscaler.observations import Observations
from metrics_adapter import externalscaler_pb2 as pb
from metrics_adapter import externalscaler_pb2_grpc as pb_grpc
from sidecar.cluster_simulation import SimulatedCluster, TraceSignals, load_trace
from sidecar.control_loop import ReplicaCount
from sidecar.kubernetes_client import ColdStartTracker
from sidecar.latest_decisions import LatestDecisions, PublishedDecision
from sidecar.main import Service, Simulation, build_replay, load_core, serve
from sidecar.settings import ForecastSettings, Settings
from simulator.trace import TraceError
from tests.fakes import FakeClock


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "trace.csv"
    path.write_text(text)
    return path


def test_trace_becomes_rates_on_a_grid_with_gaps(tmp_path: Path):
    trace = load_trace(write(tmp_path, "timestamp_s,requests\n600,120\n660,60\n780,30\n"))
    assert (trace.start, trace.step_seconds) == (600.0, 60.0)
    got = [None if math.isnan(v) else v for v in trace.values]
    assert got == [2.0, 1.0, None, 0.5], "counts per step become requests per second; absent rows NaN"


def test_bad_trace_raises_the_readers_error(tmp_path: Path):
    with pytest.raises(TraceError, match=r"trace\.csv:3"):
        load_trace(write(tmp_path, "timestamp_s,requests\n1,2\n2,lots\n"))


async def test_trace_signals_never_look_ahead(tmp_path: Path):
    trace = load_trace(write(tmp_path, "timestamp_s,requests\n0,60\n60,120\n120,180\n180,240\n"))
    signals = TraceSignals(trace, "load")
    # At t=150 only the step [60, 120) is complete: 2 rps. The step [120, 180) is still running.
    reading = await signals.instant("load", 150.0)
    assert reading is not None and reading.value == 2.0
    assert await signals.instant("load", 30.0) is None, "no complete step yet"
    assert await signals.instant("latency", 150.0) is None, "unconfigured signals are missing"
    history = await signals.history("load", 0.0, 150.0, 60.0)
    assert history is not None and history.values.tolist() == [1.0, 2.0]


async def test_simulated_pods_become_ready_one_cold_start_later():
    clock = FakeClock(1000.0)
    cluster = SimulatedCluster(clock=clock, cold_start_seconds=120.0, spec=2)
    latest = LatestDecisions()

    def publish(replicas: int) -> None:
        decision = Decision(clock.now(), replicas, Reason.LOAD)
        latest.publish(
            PublishedDecision("replay", "w", decision, Observations(clock.now(), None), clock.now())
        )
        cluster.follow(latest)

    publish(5)
    assert await cluster.read_replicas("replay", "Deployment", "w") == ReplicaCount(5, 2)
    clock.advance(119)
    assert (await cluster.read_replicas("replay", "Deployment", "w")).ready == 2
    clock.advance(1)
    assert (await cluster.read_replicas("replay", "Deployment", "w")).ready == 5
    publish(3)
    assert await cluster.read_replicas("replay", "Deployment", "w") == ReplicaCount(3, 3)


def test_replay_learns_cold_starts_only_from_pods_that_became_ready(tmp_path: Path):
    clock = FakeClock(1000.0)
    trace = load_trace(write(tmp_path, "timestamp_s,requests\n0,60\n"))
    simulation = Simulation(TraceSignals(trace, "load"), SimulatedCluster(clock, 120.0, spec=1), 1e9)
    tracker = ColdStartTracker(estimate=lambda pairs: max(ready - created for created, ready in pairs))
    latest = LatestDecisions()

    def publish(replicas: int) -> None:
        decision = Decision(clock.now(), replicas, Reason.LOAD)
        observations = Observations(clock.now(), None)
        latest.publish(PublishedDecision("replay", "w", decision, observations, clock.now()))
        simulation.follow(latest, tracker, clock.now())

    publish(4)  # three pods created at t=1000, ready at 1120
    clock.advance(60)
    publish(6)  # two more at 1060, ready at 1180
    assert tracker.cold_start_seconds("replay", "w") is None, "nothing is Ready yet: nothing learned"
    clock.advance(60)
    publish(4)  # at 1120 the first three are Ready; the two still starting are the ones removed
    assert len(tracker.pairs[("replay", "w")]) == 3
    assert tracker.cold_start_seconds("replay", "w") == 120.0
    clock.advance(600)
    publish(4)
    assert len(tracker.pairs[("replay", "w")]) == 3, "removed pods never become Ready, so never count"


async def keda_replicas(address: str) -> int:
    """GetMetrics as KEDA's `external` trigger asks it, over plain gRPC (the replay has no TLS)."""
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await pb_grpc.ExternalScalerStub(channel).GetMetrics(
            pb.GetMetricsRequest(scaledObjectRef=pb.ScaledObjectRef(name="trace", namespace="replay")),
            timeout=5,
        )
    return int(reply.metricValues[0].metricValue)


@pytest.mark.integration
async def test_replay_serves_decisions_and_ends_with_the_trace(tmp_path: Path):
    # Four hours of a per-minute trace that doubles in the last hour.
    rows = [f"{t},{600 if t < 3 * 3600 else 1200}" for t in range(0, 4 * 3600, 60)]
    path = write(tmp_path, "timestamp_s,requests\n" + "\n".join(rows) + "\n")
    base = Settings(
        server={"host": "127.0.0.1", "health_port": 0, "http_port": 0, "grpc_port": 0},
        loop={"tick_seconds": 15},
    )
    # The last three simulated hours at 3,600x: about 3 s of wall time, two of them at the low
    # load, so a slow start on a busy machine still sees both levels.
    settings, simulation, clock = build_replay(path, base, speedup=3600)
    workload = settings.workloads[0].model_copy(update={"forecast": ForecastSettings(model="last_value")})
    settings = settings.model_copy(update={"workloads": (workload,)})

    stop = asyncio.Event()
    services: list[Service] = []
    running = serve(
        settings, core=load_core(), clock=clock, stop=stop, simulation=simulation, started=services.append
    )
    task = asyncio.create_task(running)
    while not services and not task.done():
        await asyncio.sleep(0.01)
    assert services, f"serve failed to start: {task.exception()!r}"
    service = services[0]
    replicas_seen: set[int] = set()
    ready_answers: set[int] = set()
    served: set[str] = set()
    scraped = ""
    keda_values: list[int] = []
    async with aiohttp.ClientSession() as session:
        # Once the replay sets `stop` its servers close; a request that loses that race is the
        # end of polling, any other connection error is a failure.
        while not stop.is_set():
            item = service.latest.get("replay", "trace")
            if item is not None:
                replicas_seen.add(item.decision.replicas)
                try:
                    async with session.get(f"http://{service.addresses['health']}/readyz") as response:
                        ready_answers.add(response.status)
                    metric = "/apis/external.metrics.k8s.io/v1beta1/namespaces/replay/desired_replicas"
                    external = f"http://{service.addresses['external_metrics']}{metric}"
                    async with session.get(external) as response:
                        if response.status == 200:
                            served.add((await response.json())["items"][0]["value"])
                    if not scraped:
                        async with session.get(f"http://{service.addresses['health']}/metrics") as response:
                            scraped = await response.text()
                    if not keda_values:
                        keda_values.append(await keda_replicas(service.addresses["keda_grpc"]))
                except (aiohttp.ClientConnectionError, grpc.aio.AioRpcError):
                    if not stop.is_set():
                        raise
            await asyncio.sleep(0.02)
        await task
    assert 200 in ready_answers, "the health server answered while the replay ran"
    assert {"6", "12"} <= served, "the external metrics API served the replayed decisions"
    assert keda_values and keda_values[0] >= 1, "the KEDA external scaler answered GetMetrics over gRPC"
    assert 'autoscaler_desired_replicas{namespace="replay",workload="trace"}' in scraped, "/metrics answered"
    assert stop.is_set(), "the replay stopped itself at the end of the trace"
    # p99 rate is 20 rps, so a replica serves 2.5 rps; 10 rps needs ceil(10 / 1.75) = 6 at 70 %
    # and 20 rps needs 12.
    assert {6, 12} <= replicas_seen
    assert simulation.cluster.spec == 12
    # The simulated pods start in 120 s; the replay learns that from them, as a pod watch would.
    newest = service.latest.get("replay", "trace")
    assert newest is not None and newest.observations.cold_start_seconds == pytest.approx(120.0)
    assert np.isclose(settings.workloads[0].replica_capacity_rps, 2.5)

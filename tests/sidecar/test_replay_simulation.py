"""The shipped control loop over the simulated cluster: `replay`'s predictive policy and
`serve --replay` are one code path, see no future, learn the cold start from pod readiness and
reach the pods only through the example HPA.

The Kubernetes API cannot run here; the simulated cluster stands in for it at the loop's own
ports (ReplicaReader, ColdStartSource), which is the boundary a cluster's adapters implement.
"""

import asyncio
from pathlib import Path

import numpy as np
import pytest

from sidecar.core import load_core
from sidecar.main import serve
from sidecar.replay_simulation import ControlLoopPolicy, LoopOptions, serve_replay, workload_name
from sidecar.settings import ForecastSettings, Settings
from simulator.metrics_pipeline import TraceMetrics
from simulator.pods import ColdStartDistribution
from simulator.replay import ReplaySettings, default_capacity_rps
from simulator.trace import read_trace

CORE = load_core()


def write_trace(path: Path, hours: int = 8, seed: int = 5) -> Path:
    """Minutes of a two-hour wave with noise: scale-ups, scale-downs and a forecast to follow."""
    rng = np.random.default_rng(seed)
    minutes = np.arange(hours * 60)
    counts = 600 + 400 * np.sin(2 * np.pi * minutes / 120) + rng.normal(0, 40, minutes.size)
    rows = "\n".join(f"{60 * m},{max(0, round(c))}" for m, c in zip(minutes, counts, strict=True))
    path.write_text("timestamp_s,requests\n" + rows + "\n")
    return path


def replay_simulation(demand, start, settings, **options):
    policy = ControlLoopPolicy(CORE, LoopOptions(**options))
    return policy.simulate(demand, start, TraceMetrics(demand, start), settings)


async def test_replay_and_serve_replay_make_the_same_decisions_tick_by_tick(tmp_path: Path):
    path = write_trace(tmp_path / "wave.csv", hours=6)
    trace = read_trace(path)
    demand = trace.demand_per_second()
    settings = ReplaySettings(replica_capacity_rps=default_capacity_rps(trace))
    policy = ControlLoopPolicy(CORE, workload=workload_name(path))
    metrics = TraceMetrics(demand, trace.start_seconds)
    # `replay` runs its own event loop; this test's loop serves the other path.
    replayed = await asyncio.to_thread(policy.simulate, demand, trace.start_seconds, metrics, settings)

    base = Settings(server={"host": "127.0.0.1", "health_port": 0, "http_port": 0, "grpc_port": 0})
    served_settings, served = serve_replay(path, base, None, CORE.estimate_cold_start)
    stop = asyncio.Event()
    await asyncio.wait_for(
        serve(served_settings, core=CORE, clock=served.clock, stop=stop, simulation=served), 300
    )

    assert len(replayed.decisions) == len(demand) // 15
    assert served.decisions == replayed.decisions
    reasons = {reason for _, _, reason in replayed.decisions}
    assert "forecast" in reasons or "forecast_floor" in reasons, reasons
    np.testing.assert_array_equal(
        served.cluster.deployment.provisioned_per_second(),
        replayed.cluster.deployment.provisioned_per_second(),
    )


@pytest.mark.slow
@pytest.mark.parametrize("model", ["recent_quantiles", "lightgbm", "seasonal_change"])
def test_predictive_does_not_look_ahead(model):
    # Eight hours, one level per minute.
    rng = np.random.default_rng(7)
    demand = np.repeat(rng.uniform(5, 80, size=480), 60)
    cut = 6 * 3600
    changed = demand.copy()
    changed[cut:] = rng.permutation(changed[cut:]) * 5  # the future shuffled and scaled
    settings = ReplaySettings(replica_capacity_rps=10.0)
    options = {"forecast": ForecastSettings(model=model)}
    before = replay_simulation(demand, 0.0, settings, **options)
    after = replay_simulation(changed, 0.0, settings, **options)
    assert before.forecast_points, "the forecast took part in the decisions"
    # Decisions at ticks up to `cut` saw only data up to cut - 15 s: identical until then.
    until = [d for d in before.decisions if d[0] <= cut]
    assert until == [d for d in after.decisions if d[0] <= cut]
    assert before.decisions != after.decisions


def test_the_loop_learns_the_cold_start_the_pods_take(tmp_path: Path):
    trace = read_trace(write_trace(tmp_path / "wave.csv"))
    demand = trace.demand_per_second()
    settings = ReplaySettings(replica_capacity_rps=default_capacity_rps(trace), cold_start_seconds=200)
    simulation = replay_simulation(demand, trace.start_seconds, settings)
    learned = simulation.tracker.cold_start_seconds("replay", "predictive")
    samples = simulation.tracker.samples_seconds()[("replay", "predictive")]
    assert len(samples) >= 3
    # The loop's estimate is the p90 of what it saw; the pods drew lognormal(200 s, 0.2).
    assert learned == pytest.approx(np.quantile(samples, 0.9))
    assert ColdStartDistribution(200.0).quantile_seconds(0.5) < learned < 200 * 2
    # Not the 120 s default the workload starts from.
    assert learned > 150


def test_the_hpa_tolerance_holds_small_changes_of_the_published_count(tmp_path: Path):
    trace = read_trace(write_trace(tmp_path / "wave.csv", hours=4))
    demand = trace.demand_per_second()
    settings = ReplaySettings(replica_capacity_rps=default_capacity_rps(trace))
    loose = replay_simulation(demand, trace.start_seconds, settings, tolerance=0.1)
    exact = replay_simulation(demand, trace.start_seconds, settings, tolerance=0.0)

    def held(simulation):
        """Ticks whose published count differs from the spec the HPA then kept."""
        provisioned = simulation.cluster.deployment.provisioned_per_second()
        start = trace.start_seconds
        return sum(1 for at, replicas, _ in simulation.decisions if provisioned[int(at - start)] != replicas)

    assert held(exact) == 0, "with tolerance 0 the HPA adopts every published count"
    assert held(loose) > 0, "with 0.1 it holds changes under 10 %"


def write_idle_trace(path: Path) -> Path:
    """Two busy hours, an hour with no data (a Prometheus outage), two idle hours, a busy hour."""
    rng = np.random.default_rng(7)
    rows = []
    for minute in range(6 * 60):
        if 120 <= minute < 180:
            continue  # no row: unknown load, not zero
        busy = minute < 120 or minute >= 300
        rows.append(f"{60 * minute},{round(rng.normal(300, 20)) if busy else 0}")
    path.write_text("timestamp_s,requests\n" + "\n".join(rows) + "\n")
    return path


def test_through_keda_the_workload_goes_to_zero_when_idle_never_on_missing_data(tmp_path: Path):
    trace = read_trace(write_idle_trace(tmp_path / "idle.csv"))
    demand = trace.demand_per_second()
    settings = ReplaySettings(replica_capacity_rps=default_capacity_rps(trace), min_replicas=0)
    simulation = replay_simulation(demand, trace.start_seconds, settings, consumer="keda")
    ready = simulation.cluster.deployment.ready_per_second()
    hour = 3600
    # No data from 2 h to 3 h: the last replica stays however long the load is unknown.
    assert ready[2 * hour : 3 * hour].min() >= 1
    # Known idle from 3 h: the forecast lets the last replica go, and KEDA takes it after its
    # cooldown; the decisions say why.
    assert ready[4 * hour : 5 * hour].max() == 0
    idle = [at - trace.start_seconds for at, replicas, reason in simulation.decisions if reason == "idle"]
    assert idle and 3 * hour <= min(idle)
    # Demand back at 5 h: KEDA activates on the load and the pods are ready a cold start later.
    assert ready[5 * hour + 600 :].min() >= 1


def test_through_the_hpa_the_same_workload_keeps_its_replica(tmp_path: Path):
    trace = read_trace(write_idle_trace(tmp_path / "idle.csv"))
    demand = trace.demand_per_second()
    settings = ReplaySettings(replica_capacity_rps=default_capacity_rps(trace))
    simulation = replay_simulation(demand, trace.start_seconds, settings)
    assert simulation.cluster.deployment.ready_per_second().min() >= 1

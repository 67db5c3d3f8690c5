"""The simulated cluster: readiness after the cold start, removal order, and what a policy sees."""

from dataclasses import dataclass, field

import numpy as np
import pytest

from simulator.metrics_pipeline import TraceMetrics
from simulator.replay import ReplaySettings, initial_replicas, replay, simulate
from simulator.view import ClusterView

SETTINGS = ReplaySettings(
    replica_capacity_rps=10.0, target_utilization=0.5, cold_start_seconds=20, cold_start_spread=0.0
)


@dataclass
class Scripted:
    """Asks for `schedule[t]` replicas at tick t (seconds since start), otherwise keeps spec."""

    schedule: dict[int, int]
    tick_seconds: float = 10.0
    name: str = "scripted"
    views: list[ClusterView] = field(default_factory=list)

    def step(self, view: ClusterView) -> int:
        self.views.append(view)
        return self.schedule.get(int(view.now), view.spec_replicas)


def run_scripted(schedule, seconds=100, demand_rps=5.0):
    demand = np.full(seconds, demand_rps)
    policy = Scripted(schedule)
    return simulate(policy, demand, 0.0, TraceMetrics(demand, 0.0), SETTINGS, None), policy


def test_new_replicas_serve_after_the_cold_start():
    occupancy, _ = run_scripted({30: 3})  # starts at ceil(5 / 5) = 1
    assert occupancy.provisioned[29] == 1 and occupancy.provisioned[30] == 3
    assert occupancy.ready[49] == 1 and occupancy.ready[50] == 3


def test_scale_down_removes_starting_pods_first():
    occupancy, policy = run_scripted({10: 3, 20: 2, 40: 1})
    # At 20 one of the two starting pods goes; the other is ready at 30.
    assert occupancy.provisioned[20] == 2 and occupancy.ready[20] == 1
    assert occupancy.ready[30] == 2
    # At 40 a ready pod goes at once.
    assert occupancy.ready[40] == 1 and occupancy.provisioned[40] == 1
    seen = {int(view.now): view for view in policy.views}
    assert (seen[20].status_replicas, seen[20].ready_replicas) == (3, 1)
    assert (seen[30].status_replicas, seen[30].ready_replicas) == (2, 2)


def test_desired_is_clamped_to_bounds():
    occupancy, _ = run_scripted({10: 0, 20: 10**9})
    assert occupancy.provisioned[15] == SETTINGS.min_replicas
    assert occupancy.provisioned[25] == SETTINGS.max_replicas


@pytest.mark.parametrize(
    ("first_minute_rps", "expected"),
    [
        pytest.param(5.0, 1, id="exactly one replica's target"),
        pytest.param(5.1, 2, id="just above rounds up"),
        pytest.param(0.0, 1, id="no demand keeps the minimum"),
        pytest.param(np.nan, 1, id="unknown first minute keeps the minimum"),
    ],
)
def test_initial_replicas(first_minute_rps, expected):
    assert initial_replicas(np.full(120, first_minute_rps), SETTINGS) == expected


def test_replay_treats_gaps_as_no_demand_and_reports_progress():
    demand = np.concatenate((np.full(50, 5.0), np.full(50, np.nan)))
    told: list[tuple[str, int, int]] = []

    def progress(name, ticks):
        return lambda count: told.append((name, ticks, count))

    run = replay("x", demand, 0.0, TraceMetrics(demand, 0.0), SETTINGS, [Scripted({})], progress)
    assert run.demand_rps[60] == 0.0
    assert told == [("scripted", 10, 10)]

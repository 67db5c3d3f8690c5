"""Static-peak and oracle on small synthetic traces (predictive: tests/sidecar/test_replay_simulation.py)."""

from itertools import product

import numpy as np
import pytest

from simulator.policies import Oracle, StaticPeak
from simulator.replay import ReplaySettings
from simulator.report import score


def settings(cold_start_seconds):
    return ReplaySettings(
        replica_capacity_rps=10.0, target_utilization=1.0, cold_start_seconds=cold_start_seconds
    )


@pytest.mark.parametrize(
    ("demand", "cold_start", "provisioned", "ready"),
    [
        pytest.param(
            [5, 5, 5, 25, 5], 2, [1, 3, 3, 3, 1], [1, 1, 1, 3, 1], id="spike launches one cold start early"
        ),
        pytest.param([25, 5, 5, 5, 5], 2, [3, 1, 1, 1, 1], [3, 1, 1, 1, 1], id="initial pods are ready"),
        pytest.param([5, 15, 5, 15], 0, [1, 2, 1, 2], [1, 2, 1, 2], id="no cold start follows demand"),
        pytest.param([5, 15, 5, 15], 1, [2, 2, 2, 2], [2, 2, 2, 2], id="short dip is kept"),
    ],
)
def test_oracle_worked_examples(demand, cold_start, provisioned, ready):
    occupancy = Oracle().plan(np.asarray(demand, dtype=float), settings(cold_start))
    np.testing.assert_array_equal(occupancy.provisioned, provisioned)
    np.testing.assert_array_equal(occupancy.ready, ready)


def feasible_minimum(need, cold_start):
    """Brute force over every provisioned path with ready = pods alive since t - C (newest removed
    first): the least replica-seconds with ready >= need everywhere."""
    best = None
    top = max(need)
    for path in product(range(1, top + 1), repeat=len(need)):
        ready = [min(path[max(0, t - cold_start) : t + 1]) for t in range(len(need))]
        if all(r >= n for r, n in zip(ready, need, strict=True)):
            best = sum(path) if best is None else min(best, sum(path))
    return best


@pytest.mark.parametrize("seed", range(6))
def test_oracle_never_violates_and_costs_the_feasible_minimum(seed):
    rng = np.random.default_rng(seed)
    demand = rng.integers(0, 30, size=7).astype(float)
    cold_start = int(rng.integers(0, 3))
    occupancy = Oracle().plan(demand, settings(cold_start))
    figures = score(demand, occupancy, 10.0)
    assert figures.violation_ratio == 0.0
    need = [max(1, int(np.ceil(d / 10))) for d in demand]
    assert int(occupancy.provisioned.sum()) == feasible_minimum(need, cold_start)


@pytest.mark.parametrize(
    ("demand", "replicas"),
    [
        pytest.param(30.000000005, 4, id="a hair above 3 replicas' worth needs 4"),
        pytest.param(30.0, 3, id="exactly 3 replicas' worth"),
        pytest.param(29.9999999999, 3, id="a hair below"),
    ],
)
def test_the_oracle_never_misses_by_rounding(demand, replicas):
    occupancy = Oracle().plan(np.full(5, demand), settings(0))  # target utilization 1.0
    assert score(np.full(5, demand), occupancy, 10.0).violation_ratio == 0.0
    assert int(occupancy.ready[0]) == replicas


def test_static_peak_is_constant_at_the_peak():
    occupancy = StaticPeak().plan(np.array([1.0, 41.0, np.nan, 3.0]), settings(5))
    np.testing.assert_array_equal(occupancy.provisioned, [5, 5, 5, 5])
    np.testing.assert_array_equal(occupancy.ready, occupancy.provisioned)

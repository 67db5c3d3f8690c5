"""The simulated Deployment: per-pod cold starts drawn in creation order, readiness, removal."""

import itertools

import numpy as np
import pytest

from simulator.pods import ColdStartDistribution, SimulatedDeployment


def first(distribution: ColdStartDistribution, count: int) -> list[int]:
    return list(itertools.islice(distribution.draws(), count))


def test_the_same_seed_draws_the_same_sequence_and_another_seed_does_not():
    distribution = ColdStartDistribution(120.0, spread=0.2, seed=3)
    assert first(distribution, 2000) == first(distribution, 2000)
    assert first(distribution, 50) != first(ColdStartDistribution(120.0, 0.2, seed=4), 50)


def test_draws_spread_around_the_median_as_documented():
    draws = np.array(first(ColdStartDistribution(120.0, spread=0.2), 20_000))
    assert np.median(draws) == pytest.approx(120, abs=2)
    # 80 % between 0.77x and 1.29x the median (93-155 s at 120 s).
    inside = np.mean((draws >= 93) & (draws <= 155))
    assert inside == pytest.approx(0.8, abs=0.02)
    assert ColdStartDistribution(120.0, 0.2).quantile_seconds(0.9) == pytest.approx(155.06, abs=0.01)


@pytest.mark.parametrize(("median", "spread"), [(120.0, 0.0), (0.0, 0.5)])
def test_spread_zero_or_median_zero_is_a_fixed_cold_start(median, spread):
    assert set(first(ColdStartDistribution(median, spread), 100)) == {round(median)}


@pytest.mark.parametrize(
    ("median", "spread"), [(-1.0, 0.2), (float("nan"), 0.2), (120.0, -0.1), (120.0, 3.0)]
)
def test_bad_distributions_are_refused(median, spread):
    with pytest.raises(ValueError, match="cold start"):
        ColdStartDistribution(median, spread)


def test_each_new_pod_takes_its_own_draw_and_is_reported_once_ready():
    distribution = ColdStartDistribution(100.0, spread=0.3, seed=1)
    draws = first(distribution, 3)
    deployment = SimulatedDeployment(1000, initial_replicas=1, cold_starts=distribution)
    deployment.scale(10, 4)
    assert deployment.status_replicas == 4 and deployment.ready_replicas(10) == 1
    readies = sorted(10 + d for d in draws)
    assert deployment.ready_replicas(readies[0]) == 2
    assert deployment.ready_replicas(readies[-1]) == 4
    reported = deployment.became_ready(readies[1])
    assert [(p.created, p.ready) for p in reported] == [(10, readies[0]), (10, readies[1])]
    assert [p.ready for p in deployment.became_ready(999)] == [readies[2]]
    assert deployment.became_ready(999) == []
    ready = deployment.ready_per_second()
    assert ready[readies[0] - 1] == 1 and ready[readies[-1]] == 4


def test_scale_down_removes_the_least_ready_pods_first_and_they_never_report():
    deployment = SimulatedDeployment(500, initial_replicas=2, cold_starts=ColdStartDistribution(60.0, 0.0))
    deployment.scale(0, 4)  # two pods ready at 60
    deployment.scale(30, 3)  # one starting pod goes
    assert (deployment.status_replicas, deployment.ready_replicas(30)) == (3, 2)
    assert len(deployment.became_ready(100)) == 1
    deployment.scale(100, 1)  # two ready pods go at once
    assert deployment.ready_replicas(100) == 1
    provisioned = deployment.provisioned_per_second()
    assert list(provisioned[[0, 29, 30, 99, 100]]) == [4, 4, 3, 3, 1]
    assert list(deployment.ready_per_second()[[59, 60, 99, 100]]) == [2, 3, 3, 1]

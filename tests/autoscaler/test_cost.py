"""autoscaler.cost: GPUs provisioned, idle share and price per 1,000 requests from one reading."""

from __future__ import annotations

import pytest

from autoscaler import CostBasis, cost_now

H100 = CostBasis(gpus_per_replica=2.0, replica_capacity_rps=10.0, price_per_gpu_hour=3.6)


def test_four_replicas_at_a_quarter_of_their_capacity():
    cost = cost_now(4, 10.0, H100)
    assert cost is not None
    assert cost.provisioned_gpus == 8.0
    assert cost.idle_share == pytest.approx(0.75)
    # 8 GPUs x 3.6 per hour = 0.008 per second, for 10 requests a second: 0.0008 per request.
    assert cost.per_1k_requests == pytest.approx(0.8)


def test_load_beyond_capacity_leaves_nothing_idle():
    cost = cost_now(2, 50.0, H100)
    assert cost is not None and cost.idle_share == 0.0


@pytest.mark.parametrize(
    ("replicas", "load", "basis", "idle", "per_1k"),
    [
        pytest.param(3, None, H100, None, None, id="load unknown"),
        pytest.param(0, 0.0, H100, None, None, id="scaled to zero"),
        pytest.param(3, 0.0, H100, 1.0, None, id="no requests: no price per request"),
        pytest.param(3, 15.0, CostBasis(1.0, 10.0), 0.5, None, id="no price configured"),
    ],
)
def test_what_cannot_be_known_is_none_not_zero(replicas, load, basis, idle, per_1k):
    cost = cost_now(replicas, load, basis)
    assert cost is not None
    assert cost.idle_share == (pytest.approx(idle) if idle is not None else None)
    assert cost.per_1k_requests is per_1k


def test_unknown_replicas_give_no_cost():
    assert cost_now(None, 10.0, H100) is None

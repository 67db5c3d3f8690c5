"""What a workload's replicas cost: GPUs provisioned, the share of their capacity left idle, and
the price of serving 1,000 requests. Pure: the readings and rates are passed in."""

from __future__ import annotations

from dataclasses import dataclass

SECONDS_PER_HOUR = 3600.0
# A replica holds one GPU unless a workload says otherwise (settings and the replay share this).
DEFAULT_GPUS_PER_REPLICA = 1.0


@dataclass(frozen=True, slots=True)
class CostBasis:
    """`replica_capacity_rps` is what one replica serves at full use (the policy's capacity, None
    while it is neither set nor learned); `price_per_gpu_hour` None means no price is known, so no
    money figure is made up."""

    gpus_per_replica: float
    replica_capacity_rps: float | None
    price_per_gpu_hour: float | None = None


@dataclass(frozen=True, slots=True)
class Cost:
    """`idle_share`: provisioned capacity not used, 0..1 (None without replicas or load);
    `per_1k_requests`: money per 1,000 requests at the current rate (None without a price or load)."""

    provisioned_gpus: float
    idle_share: float | None
    per_1k_requests: float | None


def cost_now(replicas: int | None, load_rps: float | None, basis: CostBasis) -> Cost | None:
    """The cost of `replicas` serving `load_rps` now; None when the replica count is unknown."""
    if replicas is None:
        return None
    gpus = replicas * basis.gpus_per_replica
    capacity = None if basis.replica_capacity_rps is None else replicas * basis.replica_capacity_rps
    known_load = load_rps is not None and load_rps >= 0
    idle = 1.0 - min(1.0, load_rps / capacity) if known_load and capacity else None
    per_1k = None
    if basis.price_per_gpu_hour is not None and load_rps is not None and load_rps > 0:
        per_second = gpus * basis.price_per_gpu_hour / SECONDS_PER_HOUR
        per_1k = per_second / load_rps * 1000.0
    return Cost(gpus, idle, per_1k)


def per_1k_requests(gpu_hours: float, requests: float, price_per_gpu_hour: float | None) -> float | None:
    """Money per 1,000 requests over a span: None without a price or without requests."""
    if price_per_gpu_hour is None or requests <= 0:
        return None
    return gpu_hours * price_per_gpu_hour / requests * 1000.0

"""What the decision core knows about a workload at one instant.

Every signal is `Reading | None`: `None` means the adapter had no usable value (no series, NaN,
error). Staleness is judged here in the core from `observed_at`, never guessed in an adapter.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Signal(StrEnum):
    """The measured inputs, one name everywhere: the settings' `queries.<signal>`, the
    `Observations` field holding its reading, a decision's `recommendations` key and the
    `signal` label on /metrics."""

    LOAD = "load"
    P99_LATENCY = "p99_latency"
    QUEUE_DEPTH = "queue_depth"
    GPU_UTILIZATION = "gpu_utilization"
    KV_CACHE_UTILIZATION = "kv_cache_utilization"
    TTFT = "ttft"
    TTFT_HISTOGRAM = "ttft_histogram"


@dataclass(frozen=True, slots=True)
class Reading:
    """One measured value and the Unix time (seconds) it describes."""

    value: float
    observed_at: float

    def age_seconds(self, now: float) -> float:
        return max(0.0, now - self.observed_at)


@dataclass(frozen=True, slots=True)
class Histogram:
    """A Prometheus histogram's buckets summed over a workload, as `sum by (le) (rate(x_bucket[1m]))`
    reads them, and the Unix time they describe: `bounds` the ascending upper bounds (`le`), the
    last `math.inf`, and `counts` the cumulative rate of observations at or below each."""

    bounds: tuple[float, ...]
    counts: tuple[float, ...]
    observed_at: float

    def age_seconds(self, now: float) -> float:
        return max(0.0, now - self.observed_at)


@dataclass(frozen=True, slots=True)
class Observations:
    """A snapshot of one workload.

    Units: `load` in requests per second (whole workload), `p99_latency` in seconds,
    `queue_depth` in requests waiting (whole workload), `gpu_utilization` as a ratio 0..1
    averaged over the workload's GPUs, `kv_cache_utilization` as a ratio 0..1 averaged over the
    serving engines (vLLM's KV-cache usage gauge), `ttft` in seconds (a high quantile of the time
    to first token) and `ttft_histogram` the TTFT histogram's buckets over the last minute,
    `cold_start_seconds` the learned create->Ready time. `load` may be a token
    rate instead (prompt + generated tokens per second): the capacity is then in tokens too.
    `current_replicas` is the scale target's spec.replicas; `ready_replicas` its ready pods.
    """

    at: float
    current_replicas: int | None
    ready_replicas: int | None = None
    load: Reading | None = None
    p99_latency: Reading | None = None
    queue_depth: Reading | None = None
    gpu_utilization: Reading | None = None
    kv_cache_utilization: Reading | None = None
    ttft: Reading | None = None
    ttft_histogram: Histogram | None = None
    cold_start_seconds: float | None = None

"""The simulated Deployment: pods that go Pending -> Ready after a cold start drawn per pod.

Every policy of a replay scales its own `SimulatedDeployment`, and every deployment of a run
draws its cold starts from the same `ColdStartDistribution` in order of pod creation, so the
n-th pod any policy creates takes the same time to become Ready (the same seed); a policy that
creates fewer pods simply uses fewer of the draws.

Everything lands on a one-second grid (seconds since the trace start): pod creation at a tick,
readiness at creation + its whole-second cold start. Removed pods stop at once; the least-ready
pods (latest ready time, so starting ones first) go first, as the ReplicaSet controller prefers
not-ready pods. Replica counts between events are kept as +/- deltas and summed once at the end,
so a 27-day trace costs its scale events, not its 2.4 million seconds.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

DRAW_CHUNK = 1024


@dataclass(frozen=True, slots=True)
class ColdStartDistribution:
    """Create -> Ready seconds per pod: lognormal with median `median_seconds` and `spread` the
    standard deviation of its logarithm, rounded to whole seconds. Spread 0.2 puts 80 % of pods
    between 0.77x and 1.29x the median (120 s: 93-155 s); spread 0 is a fixed cold start."""

    median_seconds: float
    spread: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        # Written so that NaN, which fails every comparison, is refused too.
        if not 0 <= self.median_seconds <= 3600:
            raise ValueError(f"cold start median {self.median_seconds!r} s: allowed 0 to 3600")
        if not 0 <= self.spread <= 2:
            raise ValueError(f"cold start spread {self.spread!r}: allowed 0 to 2 (log standard deviation)")

    def draws(self) -> Iterator[int]:
        """The cold starts of pods 1, 2, 3, ... in creation order; the same sequence every call."""
        if self.spread == 0 or self.median_seconds == 0:
            fixed = round(self.median_seconds)
            while True:
                yield fixed
        rng = np.random.default_rng(self.seed)
        location = math.log(self.median_seconds)
        while True:
            chunk = np.rint(rng.lognormal(location, self.spread, DRAW_CHUNK)).astype(np.int64)
            yield from np.clip(chunk, 0, None).tolist()

    def describe(self) -> str:
        return (
            f"lognormal per pod: median {self.median_seconds:g} s, log standard deviation "
            f"{self.spread:g} (p90 {self.quantile_seconds(0.9):.0f} s), seed {self.seed}, "
            "the same draws in pod-creation order for every policy"
        )

    def quantile_seconds(self, q: float) -> float:
        """The distribution's q-quantile (before rounding): p90 at spread 0.2 is 1.29x the median."""
        from scipy.stats import norm

        return self.median_seconds * math.exp(self.spread * float(norm.ppf(q)))


@dataclass(frozen=True, slots=True)
class PodStart:
    """One pod's creation and readiness, seconds since the trace start."""

    created: float
    ready: float


class Deployment(Protocol):
    """What the shipped control loop's simulated cluster scales (sidecar/replay_simulation): this
    module's SimulatedDeployment (pods only) or simulator/serving.ServingCluster (pods serving
    requests). `t` is seconds since the trace start and never goes back; `advance(t)` runs
    whatever happens up to `t`, before the loop reads its signals there."""

    spec: int

    @property
    def status_replicas(self) -> int: ...

    def ready_replicas(self, t: int) -> int: ...

    def became_ready(self, t: int) -> list[PodStart]: ...

    def scale(self, t: int, replicas: int) -> None: ...

    def advance(self, t: int) -> None: ...


class SimulatedDeployment:
    """spec.replicas and the pods of one Deployment over `seconds` simulated seconds.

    It starts with `initial_replicas` pods that are ready at second 0 (their creation is
    unknown, so they teach nothing about cold starts).
    """

    def __init__(self, seconds: int, initial_replicas: int, cold_starts: ColdStartDistribution) -> None:
        self.seconds = seconds
        self.spec = initial_replicas
        self._draws = cold_starts.draws()
        # (ready, created) per pod, sorted: the last ones are the least ready.
        self._pods: list[tuple[int, int]] = [(0, -1)] * initial_replicas
        self._starting: list[tuple[int, int]] = []  # pods not yet reported Ready, same order
        self._ready_delta = np.zeros(seconds + 1, dtype=np.int64)
        self._provisioned_delta = np.zeros(seconds + 1, dtype=np.int64)
        self._ready_delta[0] = self._provisioned_delta[0] = initial_replicas

    @property
    def status_replicas(self) -> int:
        """Pods that exist, ready or starting."""
        return len(self._pods)

    def ready_replicas(self, t: int) -> int:
        return bisect.bisect_right(self._pods, (t, math.inf))

    def became_ready(self, t: int) -> list[PodStart]:
        """Pods that turned Ready at or before `t` since the last call, oldest first: what a pod
        watch reports."""
        count = bisect.bisect_right(self._starting, (t, math.inf))
        done, self._starting = self._starting[:count], self._starting[count:]
        return [PodStart(created=created, ready=ready) for ready, created in done]

    def advance(self, t: int) -> None:
        """Nothing to run: readiness is a function of time, answered when asked."""

    def scale(self, t: int, replicas: int) -> None:
        """Set spec.replicas at second `t`: create pods (each with its next cold start) or remove
        the least ready ones."""
        change = replicas - len(self._pods)
        self.spec = replicas
        if change > 0:
            for _ in range(change):
                pod = (t + next(self._draws), t)
                bisect.insort(self._pods, pod)
                bisect.insort(self._starting, pod)
                self._ready_delta[min(pod[0], self.seconds)] += 1
        elif change < 0:
            removed = self._pods[change:]
            del self._pods[change:]
            # The removed pods are the least ready, so the starting ones among them are the
            # last of `_starting` too.
            not_ready = sum(1 for ready, _ in removed if ready > t)
            if not_ready:
                del self._starting[-not_ready:]
            for ready, _ in removed:
                # A pod that was serving stops serving now; a starting one never will.
                self._ready_delta[t if ready <= t else min(ready, self.seconds)] -= 1
        self._provisioned_delta[min(t, self.seconds)] += change

    def ready_per_second(self) -> np.ndarray:
        return np.cumsum(self._ready_delta[: self.seconds])

    def provisioned_per_second(self) -> np.ndarray:
        return np.cumsum(self._provisioned_delta[: self.seconds])

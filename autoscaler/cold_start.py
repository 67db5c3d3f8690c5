"""Cold start: how long a new replica takes from pod creation to Ready, learned from history.

The pre-warm lead uses a high quantile (p90 by default) rather than the mean: provisioning for the
typical start leaves one start in two late, and a late replica is exactly the latency spike this
project exists to prevent. Pairs come from the Kubernetes API (pod creationTimestamp and the
Ready condition's lastTransitionTime).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

# A pod Ready more than an hour after creation was stuck (image pull back-off, no GPU free), not
# cold-starting; counting it would make every pre-warm an hour early.
MAX_PLAUSIBLE_SECONDS = 3600.0


def start_durations(pairs: Sequence[tuple[float, float]]) -> list[float]:
    """Ready minus created for every plausible (created_at, ready_at) pair, in seconds."""
    durations = []
    for created_at, ready_at in pairs:
        duration = ready_at - created_at
        if math.isfinite(duration) and 0 <= duration <= MAX_PLAUSIBLE_SECONDS:
            durations.append(duration)
    return durations


def estimate_cold_start(
    pairs: Sequence[tuple[float, float]],
    quantile: float = 0.9,
    default_seconds: float | None = None,
    min_samples: int = 3,
) -> float | None:
    """The `quantile` of observed start durations, or `default_seconds` with fewer than
    `min_samples` plausible pairs. Example: starts of 60, 62, 65, 70 and 180 s give a p90 of
    136 s (linear interpolation between 70 and 180), so one slow node does move the lead."""
    if not 0 < quantile < 1:
        raise ValueError(f"quantile={quantile!r} must be in (0, 1)")
    durations = start_durations(pairs)
    if len(durations) < max(1, min_samples):
        return default_seconds
    return float(np.quantile(durations, quantile))

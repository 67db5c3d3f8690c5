"""The share of requests over a latency bound, read from a Prometheus histogram's buckets.

A classic histogram counts observations at or below each bucket edge only, so a bound between two
edges (a 2 s TTFT target between vLLM's 1 and 2.5 s edges) has no count of its own. It is read
the way histogram_quantile reads a quantile, inverted: observations are spread evenly within a
bucket (the first from 0), so the count at or below the bound is the count at the bucket's lower
edge plus the bucket's own count times the share of its width below the bound; a bound on an edge
reads that edge's count exactly. Past the last finite edge nothing says where the observations
lie, and those in the +Inf bucket count as over the bound: the safe side, since a miss holds
replicas. Counts that fall from one edge to the next (a rate over counters scraped apart) are
lifted to the running maximum, as histogram_quantile does.
"""

from __future__ import annotations

import math

from autoscaler.observations import Histogram


def share_over(histogram: Histogram, bound: float) -> float | None:
    """The share of the window's observations over `bound`; None when the buckets hold none or
    cannot be read (no +Inf bucket last, edges not ascending, a count negative or not finite).

    Example: 50 at le=1, 90 at le=2.5, 100 at +Inf, bound 2: 50 + 40 * 1/1.5 = 76.7 at or below,
    so 0.233 over.
    """
    bounds, counts = histogram.bounds, histogram.counts
    if (
        len(bounds) != len(counts)
        or not bounds
        or bounds[-1] != math.inf
        or any(b >= a for a, b in zip(bounds[1:], bounds, strict=False))
        or not all(math.isfinite(c) and c >= 0 for c in counts)
    ):
        return None
    cumulative: list[float] = []
    for count in counts:
        cumulative.append(max(count, cumulative[-1]) if cumulative else count)
    total = cumulative[-1]
    if total <= 0:
        return None
    lower_edge, lower_count = 0.0, 0.0
    for edge, count in zip(bounds[:-1], cumulative[:-1], strict=True):
        if bound <= edge:
            width = edge - lower_edge
            inside = (bound - lower_edge) / width if width > 0 else 1.0
            at_or_below = lower_count + (count - lower_count) * max(0.0, inside)
            return max(0.0, 1 - at_or_below / total)
        lower_edge, lower_count = edge, count
    return max(0.0, 1 - lower_count / total)

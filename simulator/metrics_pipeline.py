"""What a policy can measure of the simulated demand: a Prometheus-like rate with a scrape delay.

Both queries run in O(1) per call (O(steps) for history) from two running integrals over the
one-second grid: the requests served and the seconds whose demand is known. A window entirely
inside a gap of the trace, or before it starts, has no known seconds and reads as None, never 0.
"""

from __future__ import annotations

import numpy as np

from forecasting import LoadSeries


class TraceMetrics:
    """MetricsPipeline over per-second demand (NaN = unknown) starting at `start_seconds`."""

    def __init__(self, demand_per_second: np.ndarray, start_seconds: float) -> None:
        known = ~np.isnan(demand_per_second)
        # requests[k] = requests in the first k seconds; known_seconds[k] likewise for known seconds.
        self._requests = np.concatenate(([0.0], np.cumsum(np.where(known, demand_per_second, 0.0))))
        self._known_seconds = np.concatenate(([0], np.cumsum(known)))
        self._start_seconds = start_seconds

    def rate(self, now: float, window_seconds: float, delay_seconds: float) -> float | None:
        end = now - delay_seconds
        requests, known = self._integrals(np.array([end - window_seconds, end]))
        seen = known[1] - known[0]
        if seen <= 0:
            return None
        return float((requests[1] - requests[0]) / seen)

    def history(
        self, now: float, step_seconds: float, delay_seconds: float, span_seconds: float | None = None
    ) -> LoadSeries:
        """Steps on a grid aligned to the trace start; a step with no known second is NaN.

        Example: start 0, step 60, now 1000, delay 15 -> steps end at or before 985, so the last
        is [900, 960) and the series has 16 values.
        """
        visible_end = now - delay_seconds
        steps = max(0, int(np.floor((visible_end - self._start_seconds) / step_seconds)))
        first = 0 if span_seconds is None else max(0, steps - int(span_seconds // step_seconds))
        edges = self._start_seconds + step_seconds * np.arange(first, steps + 1)
        requests, known = self._integrals(edges)
        seen = np.diff(known)
        with np.errstate(invalid="ignore", divide="ignore"):
            values = np.where(seen > 0, np.diff(requests) / np.maximum(seen, 1), np.nan)
        return LoadSeries(float(self._start_seconds + first * step_seconds), step_seconds, values)

    def _integrals(self, at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Both integrals at absolute times `at`, linear within a second, flat outside the trace."""
        # A trace has at least one second, so there are at least two integral points.
        offsets = np.clip(np.asarray(at, dtype=float) - self._start_seconds, 0, len(self._requests) - 1)
        whole = np.minimum(np.floor(offsets).astype(int), len(self._requests) - 2)
        fraction = offsets - whole
        return _between(self._requests, whole, fraction), _between(self._known_seconds, whole, fraction)


def _between(integral: np.ndarray, whole: np.ndarray, fraction: np.ndarray) -> np.ndarray:
    return integral[whole] + fraction * (integral[whole + 1] - integral[whole])

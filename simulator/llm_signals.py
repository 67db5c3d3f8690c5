"""vLLM's signals as a Prometheus scraping the serving cluster would show them.

The serving simulation (simulator/serving.py) scrapes every `scrape_seconds`: the gauges
`vllm:num_requests_waiting`, `vllm:num_requests_running` and `vllm:gpu_cache_usage_perc` (the mean
over serving pods of the KV tokens held for their running requests, prompt + output reserved at
admission) and the counters `vllm:prompt_tokens_total`, `vllm:generation_tokens_total` and
the requests that arrived; each first token adds a TTFT observation to a histogram with vLLM's
`vllm:time_to_first_token_seconds` buckets, read as a quantile or as the bucket rates. A query
at `now` sees only what was scraped by `now - delay` (the same scrape delay as
simulator/metrics_pipeline.py), rates are over `window` seconds like PromQL `rate()`, and every
reader returns None when nothing was scraped yet, never 0.

Samples are appended while the simulation runs, in time order, so a policy ticked at `now` reads
only the past. One function per signal, each `(now, [window,] delay) -> float | None`; `value`
dispatches on the metric name, for a SignalReader that maps queries to signals.
"""

from __future__ import annotations

import bisect
import math

import numpy as np

from forecasting import LoadSeries

# vllm:time_to_first_token_seconds buckets (vLLM's metrics module), upper bounds in seconds.
TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75,
    1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
GAUGES = ("num_requests_waiting", "num_requests_running", "gpu_cache_usage_perc")
COUNTERS = ("prompt_tokens_total", "generation_tokens_total", "requests_total")


class LlmSignals:
    def __init__(self) -> None:
        self._at: list[float] = []
        self._gauges: dict[str, list[float]] = {name: [] for name in GAUGES}
        self._counters: dict[str, list[float]] = {name: [] for name in COUNTERS}
        # TTFT observations, stamped when the first token came out (nondecreasing).
        self._ttft_at: list[float] = []
        self._ttft: list[float] = []

    # --- written by the simulation -------------------------------------------------------------
    def scrape(
        self,
        at: float,
        waiting: float,
        running: float,
        kv_usage: float,
        prompt_tokens: float,
        generation_tokens: float,
        requests: float,
    ) -> None:
        self._at.append(at)
        for name, value in zip(GAUGES, (waiting, running, kv_usage), strict=True):
            self._gauges[name].append(value)
        for name, value in zip(COUNTERS, (prompt_tokens, generation_tokens, requests), strict=True):
            self._counters[name].append(value)

    def observe_ttft(self, at: float, seconds: float) -> None:
        self._ttft_at.append(at)
        self._ttft.append(seconds)

    # --- read by policies ----------------------------------------------------------------------
    def num_requests_waiting(self, now: float, delay: float) -> float | None:
        return self._gauge("num_requests_waiting", now - delay)

    def num_requests_running(self, now: float, delay: float) -> float | None:
        return self._gauge("num_requests_running", now - delay)

    def gpu_cache_usage_perc(self, now: float, delay: float) -> float | None:
        """Mean KV-cache usage (0-1) over the pods that serve (vLLM V1 calls it kv_cache_usage_perc)."""
        return self._gauge("gpu_cache_usage_perc", now - delay)

    def prompt_tokens_rate(self, now: float, window: float, delay: float) -> float | None:
        return self._rate("prompt_tokens_total", now - delay, window)

    def generation_tokens_rate(self, now: float, window: float, delay: float) -> float | None:
        return self._rate("generation_tokens_total", now - delay, window)

    def request_rate(self, now: float, window: float, delay: float) -> float | None:
        return self._rate("requests_total", now - delay, window)

    def ttft_quantile(self, now: float, window: float, delay: float, quantile: float = 0.99) -> float | None:
        """histogram_quantile over the TTFTs observed in the window, bucketed as vLLM does:
        linear within the bucket holding the rank, the last finite bound beyond the top bucket."""
        end = now - delay
        lo = bisect.bisect_right(self._ttft_at, end - window)
        hi = bisect.bisect_right(self._ttft_at, end)
        if hi <= lo:
            return None
        counts = np.bincount(
            np.searchsorted(TTFT_BUCKETS, self._ttft[lo:hi], side="left"), minlength=len(TTFT_BUCKETS) + 1
        )
        cumulative = np.cumsum(counts)
        rank = quantile * cumulative[-1]
        bucket = int(np.searchsorted(cumulative, rank, side="left"))
        if bucket >= len(TTFT_BUCKETS):
            return TTFT_BUCKETS[-1]
        lower = TTFT_BUCKETS[bucket - 1] if bucket > 0 else 0.0
        below = cumulative[bucket - 1] if bucket > 0 else 0
        inside = counts[bucket]
        return float(lower + (TTFT_BUCKETS[bucket] - lower) * (rank - below) / inside) if inside else lower

    def ttft_buckets(self, now: float, window: float, delay: float) -> tuple[float, ...] | None:
        """`sum by (le) (rate(vllm:time_to_first_token_seconds_bucket[window]))`: per TTFT_BUCKETS
        bound and then +Inf, the TTFTs observed in the window at or below it, per second; zeros
        when none were (the series exist once the engines do), None before the first scrape."""
        end = now - delay
        if not self._at or self._at[0] > end:
            return None
        lo = bisect.bisect_right(self._ttft_at, end - window)
        hi = bisect.bisect_right(self._ttft_at, end)
        counts = np.bincount(
            np.searchsorted(TTFT_BUCKETS, self._ttft[lo:hi], side="left"), minlength=len(TTFT_BUCKETS) + 1
        )
        return tuple(float(c) / window for c in np.cumsum(counts))

    def value(self, name: str, now: float, window: float, delay: float) -> float | None:
        """Any signal by its vLLM name (without the `vllm:` prefix); `ttft_p99` for the TTFT p99."""
        if name in GAUGES:
            return self._gauge(name, now - delay)
        rates = {
            "prompt_tokens_total": self.prompt_tokens_rate,
            "generation_tokens_total": self.generation_tokens_rate,
            "requests_total": self.request_rate,
        }
        if name in rates:
            return rates[name](now, window, delay)
        if name == "ttft_p99":
            return self.ttft_quantile(now, window, delay, 0.99)
        raise KeyError(f"unknown LLM signal {name!r}; known: {', '.join((*GAUGES, *rates, 'ttft_p99'))}")

    def history(self, counter: str, start: float, end: float, step: float) -> LoadSeries | None:
        """A counter's rate per step over [start, end) (steps ending after the last scrape are
        NaN; steps starting before the first scrape are left out, so the series starts with the
        cluster, on the grid of `start`); None when nothing was scraped by `end`."""
        if not self._at or self._at[0] > end:
            return None
        if start < self._at[0]:
            start += math.ceil((self._at[0] - start) / step) * step
        steps = max(0, math.floor((end - start) / step))
        edges = start + step * np.arange(steps + 1)
        values = np.interp(edges, self._at, self._counters[counter], left=np.nan, right=np.nan)
        return LoadSeries(start, step, np.diff(values) / step)

    def _gauge(self, name: str, at: float) -> float | None:
        index = bisect.bisect_right(self._at, at) - 1
        return None if index < 0 else self._gauges[name][index]

    def _rate(self, name: str, end: float, window: float) -> float | None:
        last = bisect.bisect_right(self._at, end) - 1
        first = bisect.bisect_left(self._at, end - window)
        if last < 0 or first >= last:
            return None
        values = self._counters[name]
        return (values[last] - values[first]) / (self._at[last] - self._at[first])

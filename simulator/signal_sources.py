"""What one query reads in a replay: the simulator's side of the SignalReader the shipped control
loop is handed (sidecar/replay_simulation.TraceSignals maps each rendered query to a source).

A source answers as Prometheus would: an instant value stamped when it was measured (one scrape
delay before the query) or None when nothing was scraped yet, never 0; and, for the load, its
history on a step grid, None when there is none. Three kinds:
- `PipelineRate`: the request-rate replay's MetricsPipeline (demand per second of a trace).
- `LlmCounterRate`: the rate of one or more vLLM counters of the serving cluster summed, as
  `sum(rate(a[1m])) + sum(rate(b[1m]))` is: the request arrivals, or prompt + generation tokens.
- `LlmGauge`: a vLLM gauge, summed over the serving pods (`num_requests_waiting`).
And one histogram, read as its buckets (a `HistogramSource`): `LlmTtftBuckets`, the TTFT
histogram's bucket rates, as `sum by (le) (rate(vllm:time_to_first_token_seconds_bucket[1m]))` is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from autoscaler.observations import Histogram, Reading
from forecasting.series import LoadSeries
from simulator.llm_signals import TTFT_BUCKETS, LlmSignals
from simulator.view import MetricsPipeline


class SignalSource(Protocol):
    def instant(self, at: float) -> Reading | None: ...

    def history(self, start: float, end: float, step_seconds: float) -> LoadSeries | None: ...


class HistogramSource(Protocol):
    def histogram(self, at: float) -> Histogram | None: ...


def _known(series: LoadSeries | None) -> LoadSeries | None:
    if series is None or not len(series.values) or np.all(np.isnan(series.values)):
        return None
    return series


@dataclass(frozen=True, slots=True)
class PipelineRate:
    """The rate over the window ending one scrape delay ago, stamped then."""

    metrics: MetricsPipeline
    delay_seconds: float
    window_seconds: float

    def instant(self, at: float) -> Reading | None:
        rate = self.metrics.rate(at, self.window_seconds, self.delay_seconds)
        return None if rate is None else Reading(rate, at - self.delay_seconds)

    def history(self, start: float, end: float, step_seconds: float) -> LoadSeries | None:
        return _known(self.metrics.history(end, step_seconds, self.delay_seconds, end - start))


@dataclass(frozen=True, slots=True)
class LlmCounterRate:
    signals: LlmSignals
    counters: Sequence[str]
    delay_seconds: float
    window_seconds: float

    def instant(self, at: float) -> Reading | None:
        rates = [self.signals.value(c, at, self.window_seconds, self.delay_seconds) for c in self.counters]
        if any(rate is None for rate in rates):
            return None
        return Reading(float(sum(rates)), at - self.delay_seconds)  # type: ignore[arg-type]

    def history(self, start: float, end: float, step_seconds: float) -> LoadSeries | None:
        parts = [
            self.signals.history(c, start, end - self.delay_seconds, step_seconds) for c in self.counters
        ]
        if any(part is None for part in parts):
            return None
        first = parts[0]
        assert first is not None
        total = np.sum([part.values for part in parts if part is not None], axis=0)
        return _known(LoadSeries(first.start, step_seconds, total))


@dataclass(frozen=True, slots=True)
class LlmGauge:
    signals: LlmSignals
    gauge: str
    delay_seconds: float

    def instant(self, at: float) -> Reading | None:
        value = self.signals.value(self.gauge, at, 0.0, self.delay_seconds)
        return None if value is None else Reading(value, at - self.delay_seconds)

    def history(self, start: float, end: float, step_seconds: float) -> LoadSeries | None:
        return None  # the loop reads history for the load only


@dataclass(frozen=True, slots=True)
class LlmTtftBuckets:
    signals: LlmSignals
    delay_seconds: float
    window_seconds: float

    def histogram(self, at: float) -> Histogram | None:
        counts = self.signals.ttft_buckets(at, self.window_seconds, self.delay_seconds)
        if counts is None:
            return None
        return Histogram((*TTFT_BUCKETS, math.inf), counts, at - self.delay_seconds)

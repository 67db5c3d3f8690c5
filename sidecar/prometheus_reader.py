"""PromQL over HTTP: instant queries become `Reading | None`, range queries `LoadSeries | None`.

Written on aiohttp rather than prometheus-api-client: that client is synchronous (requests), so
1,000 workloads per tick would need a thread each or run one after another; aiohttp shares one
connection pool on the event loop and takes a per-request timeout.

Everything that is not one clean, finite number becomes *missing* (None), never 0: HTTP errors,
timeouts, `status: error`, an unexpected result type, an empty vector, several series where one
was expected, NaN and infinities. Each failure is counted by reason for /metrics
(`autoscaler_prometheus_query_errors_total`, labelled with the workload and signal the query
belongs to) and logged as a warning naming the Prometheus URL, at most once a minute per workload
so an outage of a thousand workloads is a thousand lines a minute, not per tick.

Instant queries asked for the same evaluation time in one pass of the event loop (a tick asks for
every workload's signals at once) are sent together, up to BATCH_SIZE per request: one request per
query was 1,000 round trips a tick, most of a tick's time against Prometheus. The queries are
user-written PromQL, so a batch does not rewrite them: each is tagged with its index by
`label_replace` and the tagged vectors are joined by `or`. Tags differ, so no series of one
query can match, hide or be taken for another's, and each query's series are then judged exactly
as a query of its own (none is missing, two are ambiguous, NaN is missing). Only a query whose
brackets balance outside its strings and comments, with no comma at its top level, is batched:
such a query can only be the first argument of its `label_replace`, never close it and add
expressions of its own. A batch that fails as a whole (one query is a scalar or does not parse,
Prometheus refuses the request) is read again query by query within the same timeout; a query
that then does not answer as an instant vector is read alone until it does.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from string import Template
from typing import Any

import aiohttp
import numpy as np

from autoscaler.observations import Histogram, Reading
from forecasting.series import LoadSeries
from sidecar.clock import Clock
from sidecar.telemetry import CallMetrics

log = logging.getLogger(__name__)

# Prometheus refuses a range query whose (end - start) / step is over 11,000: a request of 11,000
# points is the most it takes, and a week at 60 s (10,081 points, the default history) is one
# request, not one of 10,000 points and one of 81.
MAX_POINTS_PER_REQUEST = 11_000
# Prometheus stamps an instant result with the evaluation time we send; allow for rounding only.
FUTURE_TOLERANCE_SECONDS = 1.0
WARN_EVERY_SECONDS = 60.0
# Queries per batched request: 1,000 workloads' load is 10 requests, and one query that makes its
# batch fail costs at most 99 others a second try.
BATCH_SIZE = 100
# Below aiohttp's default pool of 100 connections per session, which the sidecar uses.
RANGE_REQUESTS_AT_ONCE = 32
# The label a batch tags each query's series with (its index in the batch).
BATCH_LABEL = "__autoscaler_batch_index"


@dataclass(frozen=True, slots=True)
class QuerySource:
    """Whose query it is: the labels its failures are counted and logged under."""

    namespace: str
    workload: str
    signal: str


_UNKNOWN_SOURCE = QuerySource("", "", "")


class QueryError(Exception):
    """A query gave no usable value; `reason` is a short label for the errors counter."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def escape_label_value(value: str) -> str:
    """Escape a value for use inside a double-quoted PromQL string, so a workload called
    `a"}or vector(1)#` stays one string instead of rewriting the query."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_query(template: str, values: dict[str, str]) -> str:
    """Substitute `$name` placeholders with escaped values; a `$` PromQL itself needs is `$$`.

    Raises KeyError naming an unknown placeholder."""
    return Template(template).substitute({k: escape_label_value(v) for k, v in values.items()})


@dataclass
class QueryStats:
    """What the reader has seen, for /metrics and /readyz. Times are Unix seconds.
    `queries_total` counts HTTP requests: a batch of instant queries is one."""

    queries_total: int = 0
    errors_total: Counter[str] = field(default_factory=Counter)
    duration_seconds_sum: float = 0.0
    last_success_at: float | None = None
    last_failure_at: float | None = None
    last_error: str | None = None


class PrometheusReader:
    """`source_of` names the workload and signal a rendered query belongs to (the control loop's
    `query_source`); it may be set after construction, since the loop is built on this reader."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        clock: Clock,
        timeout_seconds: float = 5.0,
        metrics: CallMetrics | None = None,
    ) -> None:
        self._session = session
        self._clock = clock
        self._base_url = base_url.rstrip("/")
        self._timeout_seconds = timeout_seconds
        self._metrics = metrics
        self.stats = QueryStats()
        self.source_of: Callable[[str], QuerySource | None] = lambda query: None
        # Last warning per workload; bounded by the configured workloads (cleared past 10,000).
        self._warned_at: dict[tuple[str, str], float] = {}
        # Instant queries waiting for this pass of the event loop to end, by evaluation time.
        self._gathering: dict[float, dict[str, asyncio.Future[Reading | None]]] = {}
        # Batches in flight (the event loop keeps only weak references to tasks).
        self._batches: set[asyncio.Task[None]] = set()
        # Queries that did not answer as an instant vector when read alone; bounded like _warned_at.
        self._alone: set[str] = set()
        self._batch_warned_at = -math.inf
        # Range requests in flight at once. A request's timeout starts once it has a slot: at a
        # start with 1,000 workloads, 1,000 history reads queued for the session's 100 connections
        # and two thirds timed out waiting, to be read again four ticks later. Fewer slots than
        # connections also leave the instant batches a connection of their own.
        self._range_slots = asyncio.Semaphore(RANGE_REQUESTS_AT_ONCE)

    async def instant(self, query: str, at: float) -> Reading | None:
        """The query's single value at `at`, stamped with the time Prometheus evaluated it."""
        if query in self._alone or not batchable(query):
            reading, vector = await self._instant_alone(query, at, self._timeout_seconds)
            if vector:
                self._alone.discard(query)
            return reading
        waiting = self._gathering.get(at)
        if waiting is None:
            waiting = self._gathering[at] = {}
            # Runs once every coroutine already scheduled in this pass has asked.
            asyncio.get_running_loop().call_soon(self._send_gathered, at)
        future = waiting.get(query)
        if future is None:
            future = waiting[query] = asyncio.get_running_loop().create_future()
        # Shielded: one workload's timeout must not cancel what another waits for.
        return await asyncio.shield(future)

    def _send_gathered(self, at: float) -> None:
        waiting = list(self._gathering.pop(at, {}).items())
        for first in range(0, len(waiting), BATCH_SIZE):
            batch = asyncio.ensure_future(self._read_batch(dict(waiting[first : first + BATCH_SIZE]), at))
            self._batches.add(batch)
            batch.add_done_callback(self._batches.discard)

    async def _read_batch(self, waiting: dict[str, asyncio.Future[Reading | None]], at: float) -> None:
        """Answer every future in `waiting`, in one request when they are several."""
        try:
            queries = list(waiting)
            if len(queries) == 1:
                answers = [(await self._instant_alone(queries[0], at, self._timeout_seconds))[0]]
            else:
                answers = await self._instant_batch(queries, at)
        except BaseException as error:  # a bug or a shutdown must not leave a workload waiting
            for future in waiting.values():
                if future.done():
                    continue
                if isinstance(error, asyncio.CancelledError):
                    future.cancel()
                else:
                    future.set_exception(error)
            raise
        for future, answer in zip(waiting.values(), answers, strict=True):
            if not future.done():
                future.set_result(answer)

    async def _instant_batch(self, queries: list[str], at: float) -> list[Reading | None]:
        started = time.monotonic()
        joined = " or ".join(
            f'label_replace(\n{query}\n, "{BATCH_LABEL}", "{index}", "", "")'
            for index, query in enumerate(queries)
        )
        try:
            data = await self._get(
                "/api/v1/query", {"query": joined, "time": _format_time(at)}, "instant", post=True
            )
            parts = _split_batch(data, len(queries))
        except QueryError as failure:
            left = self._timeout_seconds - (time.monotonic() - started)
            self._warn_batch(failure, len(queries), left)
            answers = await asyncio.gather(*(self._instant_alone(query, at, left) for query in queries))
            for query, (_, vector) in zip(queries, answers, strict=True):
                if not vector:
                    if len(self._alone) >= 10_000:
                        self._alone.clear()
                    self._alone.add(query)
            return [reading for reading, _ in answers]
        readings: list[Reading | None] = []
        for query, series in zip(queries, parts, strict=True):
            try:
                readings.append(_checked(_parse_instant({"resultType": "vector", "result": series}), at))
            except QueryError as failure:
                self._record_failure(failure, query)
                readings.append(None)
        return readings

    async def _instant_alone(
        self, query: str, at: float, timeout_seconds: float
    ) -> tuple[Reading | None, bool]:
        """The reading (None when missing) and whether Prometheus answered with an instant vector,
        which is what a batch can carry."""
        vector = False
        try:
            if timeout_seconds <= 0:
                raise QueryError("timeout", f"no answer within {self._timeout_seconds:g} s")
            data = await self._get(
                "/api/v1/query",
                {"query": query, "time": _format_time(at)},
                "instant",
                timeout_seconds=timeout_seconds,
            )
            vector = isinstance(data, dict) and data.get("resultType") == "vector"
            return _checked(_parse_instant(data), at), vector
        except QueryError as failure:
            self._record_failure(failure, query)
            return None, vector

    def _warn_batch(self, failure: QueryError, count: int, left_seconds: float) -> None:
        # Once a minute: the queries' own failures are counted and logged by workload when they
        # are read again one by one.
        now = self._clock.now()
        if now - self._batch_warned_at < WARN_EVERY_SECONDS:
            return
        self._batch_warned_at = now
        log.warning(
            "batched Prometheus query of %d queries failed at %s: %s; reading them one by one",
            count,
            self._base_url,
            failure,
            extra={"prometheus_url": self._base_url, "reason": failure.reason, "seconds_left": left_seconds},
        )

    async def histogram(self, query: str, at: float) -> Histogram | None:
        """The query's buckets at `at`: one series per `le` label (a `sum by (le)` of a
        histogram's bucket rates), stamped when Prometheus evaluated them."""
        try:
            data = await self._get("/api/v1/query", {"query": query, "time": _format_time(at)}, "instant")
            histogram = _parse_histogram(data)
            if histogram.observed_at > at + FUTURE_TOLERANCE_SECONDS:
                raise QueryError(
                    "future_sample",
                    f"stamped {histogram.observed_at - at:.0f} s after the query time {_format_time(at)}",
                )
            return histogram
        except QueryError as failure:
            self._record_failure(failure, query)
            return None

    async def history(self, query: str, start: float, end: float, step_seconds: float) -> LoadSeries | None:
        """The query on a regular grid from `start` (aligned down to the step) to `end`: steps
        Prometheus has no value for are NaN. None when the whole range failed or is empty."""
        if step_seconds <= 0 or end <= start:
            raise ValueError(f"bad range: start={start}, end={end}, step_seconds={step_seconds}")
        first = math.floor(start / step_seconds) * step_seconds
        count = int((end - first) // step_seconds) + 1
        values = np.full(count, np.nan)
        seen = False
        for chunk_start in range(0, count, MAX_POINTS_PER_REQUEST):
            chunk_end = min(count, chunk_start + MAX_POINTS_PER_REQUEST) - 1
            params = {
                "query": query,
                "start": _format_time(first + chunk_start * step_seconds),
                "end": _format_time(first + chunk_end * step_seconds),
                "step": f"{step_seconds:g}",
            }
            try:
                async with self._range_slots:
                    data = await self._get("/api/v1/query_range", params, "range")
                seen |= _fill_matrix(data, values, first, step_seconds)
            except QueryError as failure:
                self._record_failure(failure, query)
        if not seen:
            return None
        # A value at grid time t is the query evaluated at t (e.g. a rate over the minute before
        # t), so it describes the step ending at t: shift the grid back by one step.
        return LoadSeries(start=first - step_seconds, step_seconds=step_seconds, values=values)

    async def _get(
        self,
        path: str,
        params: dict[str, str],
        kind: str,
        post: bool = False,
        timeout_seconds: float | None = None,
    ) -> Any:
        """`post` sends the parameters as a form (a batch's query is longer than a URL should be)."""
        started = time.perf_counter()
        self.stats.queries_total += 1
        timeout = self._timeout_seconds if timeout_seconds is None else timeout_seconds
        # Prometheus also gets the timeout, so it gives up on its side instead of working on.
        # Prometheus durations take no fractions ("0.5s" is a 400): send whole milliseconds.
        params = {**params, "timeout": f"{max(1, round(timeout * 1000))}ms"}
        url = self._base_url + path
        try:
            async with asyncio.timeout(timeout):
                request = (
                    self._session.post(url, data=params) if post else self._session.get(url, params=params)
                )
                async with request as response:
                    body = await _decode(response)
        except TimeoutError as error:
            raise QueryError("timeout", f"no answer within {self._timeout_seconds:g} s") from error
        except aiohttp.ClientError as error:
            raise QueryError("connection", f"{type(error).__name__}: {error}") from error
        finally:
            took = time.perf_counter() - started
            self.stats.duration_seconds_sum += took
            if self._metrics is not None:
                self._metrics.prometheus_seconds.labels(kind).observe(took)
        if "data" not in body:
            raise QueryError("bad_response", "no data in a successful answer")
        self.stats.last_success_at = self._clock.now()
        return body["data"]

    def _record_failure(self, failure: QueryError, query: str) -> None:
        now = self._clock.now()
        self.stats.errors_total[failure.reason] += 1
        self.stats.last_failure_at = now
        self.stats.last_error = str(failure)
        source = self.source_of(query) or _UNKNOWN_SOURCE
        if self._metrics is not None:
            self._metrics.prometheus_errors.labels(
                source.namespace, source.workload, source.signal, failure.reason
            ).inc()
        key = (source.namespace, source.workload)
        if now - self._warned_at.get(key, -math.inf) < WARN_EVERY_SECONDS:
            return
        if len(self._warned_at) >= 10_000:
            self._warned_at.clear()
        self._warned_at[key] = now
        if failure.reason in {"connection", "timeout"}:
            fix = "check prometheus.url and that Prometheus answers there"
        elif source.workload:
            fix = f"check workloads[{source.namespace}/{source.workload}].queries.{source.signal}"
        else:
            fix = "check the query"
        log.warning(
            "Prometheus query failed at %s: %s; %s",
            self._base_url,
            failure,
            fix,
            extra={
                "prometheus_url": self._base_url,
                "namespace": source.namespace,
                "workload": source.workload,
                "signal": source.signal,
                "reason": failure.reason,
            },
        )


async def _decode(response: aiohttp.ClientResponse) -> dict[str, Any]:
    try:
        body = await response.json(content_type=None)
    except ValueError as error:
        raise QueryError("bad_response", f"HTTP {response.status}, body is not JSON") from error
    if not isinstance(body, dict):
        raise QueryError("bad_response", f"body is a {type(body).__name__}, not an object")
    if response.status != 200 or body.get("status") != "success":
        detail = f"HTTP {response.status} {body.get('errorType', '')}: {body.get('error', '')}"
        raise QueryError("http" if response.status >= 500 else "bad_query", detail)
    return body


def _format_time(unix_seconds: float) -> str:
    return f"{unix_seconds:.3f}"


def _finite(raw: Any) -> float | None:
    """Prometheus sends sample values as strings ("12.5", "NaN", "+Inf")."""
    try:
        value = float(raw)
    except (TypeError, ValueError, OverflowError):  # OverflowError: a JSON integer beyond float
        return None
    return value if math.isfinite(value) else None


def _sample(pair: Any) -> tuple[float, float | None]:
    if not (isinstance(pair, list) and len(pair) == 2):
        raise QueryError("bad_response", f"sample {pair!r} is not [time, value]")
    timestamp = _finite(pair[0])
    if timestamp is None:
        raise QueryError("bad_response", f"sample time {pair[0]!r} is not a number")
    return timestamp, _finite(pair[1])


def _checked(reading: Reading, at: float) -> Reading:
    if reading.observed_at > at + FUTURE_TOLERANCE_SECONDS:
        # Its age would stay 0 for as long as the stamp is ahead: a dead signal would look live,
        # and the history grid would jump forward to it.
        raise QueryError(
            "future_sample",
            f"stamped {reading.observed_at - at:.0f} s after the query time {_format_time(at)}",
        )
    return reading


@lru_cache(maxsize=16_384)  # a workload asks the same queries every tick
def batchable(query: str) -> bool:
    """Whether `query` can only be one whole expression inside `label_replace(query, ...)`: its
    brackets balance and no comma stands at its top level, strings and comments aside (PromQL's
    three quotes; `#` to the end of the line). `a) or vector(1` is refused: inside the wrapper
    it would close the call and add a series of its own to the batch."""
    depth, quote, index = 0, "", 0
    while index < len(query):
        char = query[index]
        if quote:
            if char == "\\" and quote != "`":
                index += 1
            elif char == quote:
                quote = ""
        elif char in "\"'`":
            quote = char
        elif char == "#":
            end = query.find("\n", index)
            index = len(query) if end < 0 else end
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
            if depth < 0:
                return False
        elif char == "," and depth == 0:
            return False
        index += 1
    return depth == 0 and not quote and bool(query.strip())


def _split_batch(data: Any, count: int) -> list[list[Any]]:
    """A batch's vector, split by tag into one list of series per query. Anything else than
    every series tagged with an index of the batch fails the batch: a series that cannot be put
    to its query must not be put to another's."""
    if not isinstance(data, dict) or data.get("resultType") != "vector":
        raise QueryError("bad_result_type", "a batch answered with something else than a vector")
    result = data.get("result")
    if not isinstance(result, list):
        raise QueryError("bad_response", "vector result is not a list")
    parts: list[list[Any]] = [[] for _ in range(count)]
    tags = {str(index): part for index, part in enumerate(parts)}
    for series in result:
        metric = series.get("metric") if isinstance(series, dict) else None
        part = tags.get(metric.get(BATCH_LABEL)) if isinstance(metric, dict) else None
        if part is None:
            raise QueryError("bad_response", "a batch answered with a series no query of it asked for")
        part.append(series)
    return parts


def _parse_instant(data: Any) -> Reading | None:
    if not isinstance(data, dict):
        raise QueryError("bad_response", "data is not an object")
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar":
        timestamp, value = _sample(result)
    elif kind == "vector":
        if not isinstance(result, list):
            raise QueryError("bad_response", "vector result is not a list")
        if not result:
            raise QueryError("empty", "the query matched no series")
        if len(result) > 1:
            raise QueryError("ambiguous", f"{len(result)} series where one was expected; aggregate them")
        series = result[0]
        if not isinstance(series, dict):
            raise QueryError("bad_response", "vector element is not an object")
        timestamp, value = _sample(series.get("value"))
    else:
        raise QueryError("bad_result_type", f"resultType {kind!r}, expected vector or scalar")
    if value is None:
        raise QueryError("not_finite", "the value is NaN or infinite")
    return Reading(value=value, observed_at=timestamp)


def _parse_histogram(data: Any) -> Histogram:
    """A vector of bucket series, one per `le`, as a Histogram (every bucket must be a number:
    a NaN bucket leaves the share over a bound unknown)."""
    if not isinstance(data, dict) or data.get("resultType") != "vector":
        raise QueryError("bad_result_type", "expected a vector of buckets, one series per le")
    result = data.get("result")
    if not isinstance(result, list):
        raise QueryError("bad_response", "vector result is not a list")
    if not result:
        raise QueryError("empty", "the query matched no series")
    buckets: dict[float, float] = {}
    stamps = set()
    for series in result:
        labels = series.get("metric") if isinstance(series, dict) else None
        edge = _finite(labels.get("le")) if isinstance(labels, dict) else None
        if isinstance(labels, dict) and labels.get("le") in {"+Inf", "Inf", "inf"}:
            edge = math.inf
        if edge is None:
            raise QueryError("bad_buckets", "a series without a numeric le label; aggregate with sum by (le)")
        if edge in buckets:
            raise QueryError("ambiguous", f"two series for le={edge:g}; aggregate with sum by (le)")
        timestamp, value = _sample(series.get("value"))
        if value is None:
            raise QueryError("not_finite", f"the bucket le={edge:g} is NaN or infinite")
        buckets[edge] = value
        stamps.add(timestamp)
    if math.inf not in buckets:
        raise QueryError("bad_buckets", "no le=+Inf bucket: the histogram's total is unknown")
    bounds = tuple(sorted(buckets))
    return Histogram(bounds, tuple(buckets[b] for b in bounds), max(stamps))


def _fill_matrix(data: Any, values: np.ndarray, first: float, step_seconds: float) -> bool:
    """Write a one-series matrix into `values` on the grid; return whether any value landed."""
    if not isinstance(data, dict):
        raise QueryError("bad_response", "data is not an object")
    if data.get("resultType") != "matrix":
        raise QueryError("bad_result_type", f"resultType {data.get('resultType')!r}, expected matrix")
    result = data.get("result")
    if not isinstance(result, list):
        raise QueryError("bad_response", "matrix result is not a list")
    if len(result) > 1:
        raise QueryError("ambiguous", f"{len(result)} series where one was expected; aggregate them")
    if not result:
        return False
    series = result[0]
    samples = series.get("values") if isinstance(series, dict) else None
    if not isinstance(samples, list):
        raise QueryError("bad_response", "matrix series has no values list")
    landed = _fill_well_formed(samples, values, first, step_seconds)
    if landed is not None:
        return landed
    landed = False
    for pair in samples:
        timestamp, value = _sample(pair)
        index = round((timestamp - first) / step_seconds)
        if value is not None and 0 <= index < len(values):
            values[index] = value
            landed = True
    return landed


def _fill_well_formed(
    samples: list[Any], values: np.ndarray, first: float, step_seconds: float
) -> bool | None:
    """What the loop in _fill_matrix does, in numpy, when every sample is a pair of a finite time
    and a value: a week of minutes is 10,080 samples a workload, and that loop was the largest
    part of a first tick for 1,000 workloads. None when any sample is not such a pair: the loop
    then raises naming it."""
    try:
        pairs = np.array(samples, dtype=object)
        if pairs.ndim != 2 or pairs.shape[1] != 2:
            return None
        times = pairs[:, 0].astype(float)
        # float() of each value, as _finite reads them: "NaN" and "+Inf" parse and are dropped.
        raw = pairs[:, 1].astype(float)
    except (TypeError, ValueError, OverflowError):
        return None
    if not np.isfinite(times).all():
        return None
    # np.round rounds halves to even, as round() does.
    index = np.round((times - first) / step_seconds)
    keep = np.isfinite(raw) & (index >= 0) & (index < len(values))
    values[index[keep].astype(int)] = raw[keep]
    return bool(keep.any())

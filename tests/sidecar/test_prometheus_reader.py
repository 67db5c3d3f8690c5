"""PrometheusReader against a real Prometheus (backfilled with promtool) and against a loopback
server that answers garbage or too slowly. Everything unusable must come back as None."""

from __future__ import annotations

import asyncio
import math
import time

import aiohttp
import numpy as np
import pytest
from aiohttp import web

from sidecar.control_loop import ControlLoop, LoopPorts
from sidecar.core import load_core
from sidecar.latest_decisions import LatestDecisions
from sidecar.prometheus_reader import (
    BATCH_LABEL,
    RANGE_REQUESTS_AT_ONCE,
    PrometheusReader,
    batchable,
    escape_label_value,
    render_query,
)
from sidecar.settings import LoopSettings, QuerySettings, WorkloadSettings
from tests.conftest import eventually, free_port
from tests.fakes import FakeClock

STEP = 60
TRICKY = 'a"} or vector(1) #'


def history_end() -> int:
    # Whole minutes, ten minutes back, so every point lies in the backfilled blocks.
    return (int(time.time()) // STEP) * STEP - 600


def openmetrics(end: int) -> str:
    """Three hours of per-minute gauges: a pattern, a gap, a NaN series, two series that must
    not be silently summed, and a label value that tries to escape its quotes."""
    lines = ["# TYPE load_rps gauge"]
    for t in range(end - 3 * 3600, end + 1, STEP):
        i = (t // STEP) % 7
        lines.append(f'load_rps{{workload="llama"}} {10 + i} {t}')
        if not end - 3600 <= t < end - 1800:
            lines.append(f'load_rps{{workload="gappy"}} 5 {t}')
        lines.append(f'load_rps{{workload="nan"}} NaN {t}')
        lines.append(f'load_rps{{workload="twin",replica="a"}} 1 {t}')
        lines.append(f'load_rps{{workload="twin",replica="b"}} 2 {t}')
        escaped = TRICKY.replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'load_rps{{workload="{escaped}"}} 99 {t}')
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def backfilled(module_prometheus_factory):
    end = history_end()
    server = module_prometheus_factory()
    server.backfill(openmetrics(end))
    server.start()
    return server, end


@pytest.fixture
async def reader(backfilled):
    server, _ = backfilled
    async with aiohttp.ClientSession() as session:
        yield PrometheusReader(session, server.url, FakeClock(), timeout_seconds=5)


@pytest.mark.integration
async def test_history_lands_on_the_grid_with_gaps_as_nan(reader, backfilled):
    _, end = backfilled
    series = await reader.history('load_rps{workload="llama"}', end - 7200, end, STEP)
    assert series is not None
    # Each grid point is the step that ends there: values[i] describes [start + i*step, +step).
    expected = [10 + ((series.start + (i + 1) * STEP) // STEP) % 7 for i in range(len(series.values))]
    assert series.step_seconds == STEP and len(series.values) == 121
    np.testing.assert_array_equal(series.values, expected)

    gappy = await reader.history('load_rps{workload="gappy"}', end - 7200, end, STEP)
    assert gappy is not None
    missing = np.isnan(gappy.values)
    # Prometheus's 5-minute lookback fills the first five minutes of a gap; the rest is NaN.
    assert 20 <= missing.sum() <= 30
    assert np.all(gappy.values[~missing] == 5)


@pytest.mark.integration
async def test_long_history_is_split_under_the_point_limit(reader, backfilled):
    _, end = backfilled
    # 3 hours at 1 s is 10,801 points: one request, under Prometheus's cap of 11,000.
    series = await reader.history('load_rps{workload="llama"}', end - 3 * 3600, end, 1)
    assert series is not None and len(series.values) == 3 * 3600 + 1
    assert reader.stats.queries_total == 1
    # 5 hours at 1 s (18,001 points) is over it: two requests, the first of 11,000 points.
    series = await reader.history('load_rps{workload="llama"}', end - 5 * 3600, end, 1)
    assert series is not None and len(series.values) == 5 * 3600 + 1
    assert reader.stats.queries_total == 3
    assert not np.isnan(series.values[-1]) and not np.isnan(series.values[11_000])
    assert not np.isnan(series.values[10_999]) and not reader.stats.errors_total


@pytest.mark.parametrize(
    ("query", "value", "error_reason"),
    [
        pytest.param('load_rps{workload="llama"}', "pattern", None, id="one series is a reading"),
        pytest.param('load_rps{workload="nobody"}', None, "empty", id="empty result is missing not 0"),
        pytest.param('load_rps{workload="nan"}', None, "not_finite", id="NaN is missing"),
        pytest.param('load_rps{workload="twin"}', None, "ambiguous", id="two series are not summed"),
        pytest.param('sum(load_rps{workload="twin"})', 3.0, None, id="explicit sum is fine"),
        pytest.param("scalar(sum(load_rps{workload='twin'}))", 3.0, None, id="scalar result"),
        pytest.param('load_rps{workload="llama"}[5m]', None, "bad_result_type", id="matrix is refused"),
        pytest.param("sum(load_rps{", None, "bad_query", id="PromQL syntax error"),
        pytest.param(
            '1 / (load_rps{workload="twin",replica="a"} - 1)', None, "not_finite", id="Inf is missing"
        ),
    ],
)
@pytest.mark.integration
async def test_instant_values(reader, backfilled, query, value, error_reason):
    _, end = backfilled
    reading = await reader.instant(query, at=end - 120)
    if value is None:
        assert reading is None
        assert dict(reader.stats.errors_total) == {error_reason: 1}
    else:
        expected = 10 + ((end - 120) // STEP) % 7 if value == "pattern" else value
        assert reading is not None and reading.value == expected
        assert reading.observed_at == end - 120
        assert not reader.stats.errors_total


@pytest.mark.integration
async def test_label_values_cannot_rewrite_the_query(reader, backfilled):
    _, end = backfilled
    query = render_query('load_rps{workload="$workload"}', {"workload": TRICKY})
    reading = await reader.instant(query, at=end - 60)
    # Unescaped, the query would be `load_rps{workload="a"} or vector(1) #"}`: value 1.
    assert reading is not None and reading.value == 99


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        pytest.param("llama", "llama", id="plain"),
        pytest.param('a"b', 'a\\"b', id="quote"),
        pytest.param("a\\b", "a\\\\b", id="backslash first, so quotes are not double-escaped"),
        pytest.param("a\nb", "a\\nb", id="newline"),
    ],
)
def test_escape_label_value(raw, escaped):
    assert escape_label_value(raw) == escaped


def test_unknown_placeholder_is_named():
    with pytest.raises(KeyError, match="model"):
        render_query('x{model="$model"}', {"workload": "w"})


# A loopback server that misbehaves the way a broken proxy or overloaded Prometheus does.
def vector(value: object) -> dict:
    return {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": value}]}}


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        pytest.param(200, "<html>proxy login</html>", "bad_response", id="HTML instead of JSON"),
        pytest.param(200, [1, 2], "bad_response", id="JSON list instead of object"),
        pytest.param(200, {"status": "success"}, "bad_response", id="success without data"),
        pytest.param(200, {"status": "success", "data": []}, "bad_response", id="data is not an object"),
        pytest.param(200, vector([1000, "twelve"]), "not_finite", id="value not a number"),
        pytest.param(200, vector([1000, 10**400]), "not_finite", id="value beyond a float"),
        pytest.param(200, vector([1000 + 86400, "5"]), "future_sample", id="stamped a day ahead"),
        pytest.param(200, vector([1.0]), "bad_response", id="sample not a pair"),
        pytest.param(200, vector(["x", "1"]), "bad_response", id="sample time not a number"),
        pytest.param(200, {"status": "success", "data": {"resultType": "string", "result": [1, "a"]}},
                     "bad_result_type", id="string result"),
        pytest.param(503, {"status": "error", "errorType": "unavailable", "error": "x"}, "http", id="503"),
        pytest.param(422, {"status": "error", "errorType": "execution", "error": "x"}, "bad_query", id="422"),
        pytest.param(502, "Bad Gateway", "bad_response", id="502 from a proxy"),
    ],
)  # fmt: skip
async def test_garbage_answers_are_missing(status, body, reason):
    async def answer(request: web.Request) -> web.Response:
        if isinstance(body, str):
            return web.Response(status=status, text=body)
        return web.json_response(body, status=status)

    async with serve(answer) as url, aiohttp.ClientSession() as session:
        reader = PrometheusReader(session, url, FakeClock())
        assert await reader.instant("up", at=1000.0) is None
        assert dict(reader.stats.errors_total) == {reason: 1}
        assert await reader.history("up", 0.0, 600.0, 60) is None
        assert reader.stats.errors_total.total() == 2
        assert reader.stats.last_error is not None


async def test_slow_prometheus_times_out_as_missing():
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response(vector([1000, "5"]))

    clock = FakeClock()
    async with serve(slow) as url, aiohttp.ClientSession() as session:
        reader = PrometheusReader(session, url, clock, timeout_seconds=0.2)
        assert await reader.instant("up", at=1000.0) is None
        assert dict(reader.stats.errors_total) == {"timeout": 1}
        assert reader.stats.last_failure_at == clock.now()
        release.set()


async def test_nothing_listening_is_missing():
    async with aiohttp.ClientSession() as session:
        reader = PrometheusReader(session, f"http://127.0.0.1:{free_port()}", FakeClock())
        assert await reader.instant("up", at=1000.0) is None
        assert dict(reader.stats.errors_total) == {"connection": 1}


async def test_partial_range_keeps_what_arrived():
    async def partial(request: web.Request) -> web.Response:
        values = [[120, "4"], [180, "NaN"], [300, "6"], [9999, "7"]]
        matrix = {"resultType": "matrix", "result": [{"metric": {}, "values": values}]}
        return web.json_response({"status": "success", "data": matrix})

    async with serve(partial) as url, aiohttp.ClientSession() as session:
        series = await PrometheusReader(session, url, FakeClock()).history("up", 60.0, 300.0, 60)
    assert series is not None and series.start == 0.0
    got = [None if math.isnan(v) else v for v in series.values]
    # Grid 60..300: 60 absent, 120 = 4, 180 NaN, 240 absent, 300 = 6; 9999 is off the grid.
    assert got == [None, 4.0, None, None, 6.0]


class serve:  # noqa: N801 - used as `async with serve(handler) as url`
    def __init__(self, handler) -> None:
        self.handler = handler

    async def __aenter__(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handler)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()
        return f"http://127.0.0.1:{port}"

    async def __aexit__(self, *exc) -> None:
        await self.runner.cleanup()


def buckets(*series: tuple[dict, str]) -> dict:
    result = [{"metric": labels, "value": [1000, value]} for labels, value in series]
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param(buckets(({"le": "1.0"}, "3")), "bad_buckets", id="no +Inf bucket"),
        pytest.param(buckets(({}, "3"), ({"le": "+Inf"}, "4")), "bad_buckets", id="a series without le"),
        pytest.param(buckets(({"le": "x"}, "3"), ({"le": "+Inf"}, "4")), "bad_buckets", id="le not a number"),
        pytest.param(buckets(({"le": "1"}, "3"), ({"le": "1.0"}, "3"), ({"le": "+Inf"}, "4")), "ambiguous",
                     id="one edge twice: not summed by le"),
        pytest.param(buckets(({"le": "1"}, "NaN"), ({"le": "+Inf"}, "4")), "not_finite", id="a NaN bucket"),
        pytest.param(buckets(), "empty", id="no series"),
        pytest.param(vector([1000, "5"]), "bad_buckets", id="one plain series"),
    ],
)  # fmt: skip
async def test_unusable_buckets_are_missing(body, reason):
    async def answer(request: web.Request) -> web.Response:
        return web.json_response(body)

    async with serve(answer) as url, aiohttp.ClientSession() as session:
        reader = PrometheusReader(session, url, FakeClock())
        assert await reader.histogram("h", at=1000.0) is None
        assert dict(reader.stats.errors_total) == {reason: 1}


async def test_buckets_come_back_in_edge_order_whatever_order_they_arrive_in():
    body = buckets(({"le": "+Inf"}, "10"), ({"le": "2.5"}, "9"), ({"le": "1.0"}, "5"))

    async def answer(request: web.Request) -> web.Response:
        return web.json_response(body)

    async with serve(answer) as url, aiohttp.ClientSession() as session:
        histogram = await PrometheusReader(session, url, FakeClock()).histogram("h", at=1000.0)
    assert histogram is not None
    assert histogram.bounds == (1.0, 2.5, math.inf)
    assert (histogram.counts, histogram.observed_at) == ((5, 9, 10), 1000)


# --- instant queries of one pass of the event loop share a request -------------------------------

# What a batch must not change: every one of these reads, together, what it reads alone.
TOGETHER = [
    'load_rps{workload="llama"}',
    'sum(load_rps{workload="twin"})',
    '2 * load_rps{workload="llama"} # a comment must not swallow the batch',
    'load_rps{workload="nobody"}',
    'load_rps{workload="nan"}',
    'load_rps{workload="twin"}',
    render_query('load_rps{workload="$workload"}', {"workload": TRICKY}),
    'max by (workload) (load_rps{workload=~"llama|gappy"}) > 7',
]


async def read_alone(url: str, query: str, at: float) -> tuple[float, float] | None:
    async with aiohttp.ClientSession() as session:
        reading = await PrometheusReader(session, url, FakeClock()).instant(query, at)
    return None if reading is None else (reading.value, reading.observed_at)


@pytest.mark.integration
async def test_queries_asked_together_read_in_one_request_what_each_reads_alone(reader, backfilled):
    server, end = backfilled
    at = end - 120.0
    alone = [await read_alone(server.url, query, at) for query in TOGETHER]
    together = await asyncio.gather(*(reader.instant(query, at) for query in TOGETHER))
    assert [None if r is None else (r.value, r.observed_at) for r in together] == alone
    assert reader.stats.queries_total == 1
    # Missing, NaN and two series stay what they were alone: missing, never 0 or a sum.
    assert alone[3] is None and alone[4] is None and alone[5] is None and alone[0] is not None
    assert dict(reader.stats.errors_total) == {"empty": 1, "not_finite": 1, "ambiguous": 1}


@pytest.mark.integration
async def test_a_query_that_breaks_its_batch_is_read_alone_and_the_others_still_read(reader, backfilled):
    _, end = backfilled
    at = end - 120.0
    scalar = "scalar(sum(load_rps{workload='twin'}))"  # fine alone, refused inside label_replace
    matrix = 'load_rps{workload="llama"}[5m]'  # refused alone too
    queries = ['load_rps{workload="llama"}', scalar, matrix, 'sum(load_rps{workload="twin"})']
    first = await asyncio.gather(*(reader.instant(query, at) for query in queries))
    llama = 10 + int(at // STEP) % 7
    assert [None if r is None else r.value for r in first] == [llama, 3.0, None, 3.0]
    assert reader.stats.queries_total == 1 + 4  # the batch, then each query alone
    second = await asyncio.gather(*(reader.instant(query, at) for query in queries))
    assert [None if r is None else r.value for r in second] == [llama, 3.0, None, 3.0]
    assert reader.stats.queries_total == 5 + 3  # the scalar and the matrix alone, the others together


@pytest.mark.integration
async def test_a_query_that_would_close_its_wrapper_is_never_batched(reader, backfilled):
    _, end = backfilled
    # Alone, a syntax error. Inside `label_replace(Q, tag, "0", "", "")` it would tag vector(5)
    # with the next query's index and answer 0 for itself.
    crafted = f'vector(5), "{BATCH_LABEL}", "1", "", "") or label_replace(vector(0)'
    llama = 'load_rps{workload="llama"}'
    readings = await asyncio.gather(reader.instant(crafted, end - 120.0), reader.instant(llama, end - 120.0))
    assert readings[0] is None and dict(reader.stats.errors_total) == {"bad_query": 1}
    assert readings[1] is not None and readings[1].value == 10 + int((end - 120) // STEP) % 7


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param('sum(rate(x{pod=~"$w-.*"}[1m]))', True, id="an aggregation"),
        pytest.param('x{a=")"} + y{b="(,"}', True, id="brackets and commas inside strings"),
        pytest.param("x{a=`)\\`} # ), (\n + y", True, id="raw strings and comments"),
        pytest.param("histogram_quantile(0.99, sum by (le) (rate(x[2m])))", True, id="commas inside calls"),
        pytest.param("x) or vector(1", False, id="closes a bracket it did not open"),
        pytest.param("vector(1), 2", False, id="a comma at the top level"),
        pytest.param("sum(x", False, id="an unclosed bracket"),
        pytest.param('x{a="}', False, id="an unclosed string"),
        pytest.param('x{a="\\"}', False, id="an escaped quote does not close the string"),
        pytest.param("  ", False, id="nothing"),
    ],
)
def test_batchable(query: str, expected: bool) -> None:
    assert batchable(query) is expected


async def test_a_batch_that_times_out_leaves_no_time_to_read_alone_and_is_missing():
    release = asyncio.Event()
    requests: list[str] = []

    async def slow(request: web.Request) -> web.Response:
        requests.append(request.method)
        await release.wait()
        return web.json_response(vector([1000, "5"]))

    async with serve(slow) as url, aiohttp.ClientSession() as session:
        reader = PrometheusReader(session, url, FakeClock(), timeout_seconds=0.2)
        readings = await asyncio.gather(reader.instant("up", 1000.0), reader.instant("down", 1000.0))
        assert readings == [None, None]
        assert dict(reader.stats.errors_total) == {"timeout": 2}
        assert requests == ["POST"]  # the batch alone: its timeout is the whole budget
        release.set()


@pytest.mark.integration
async def test_a_tick_of_many_workloads_reads_their_loads_together_and_a_missing_one_holds(backfilled):
    server, end = backfilled
    names = ["llama", "gappy", "twin", *(f"gone-{i}" for i in range(27))]
    clock = FakeClock(end - 135.0)
    latest = LatestDecisions()
    the_core = load_core()
    async with aiohttp.ClientSession() as session:
        reader = PrometheusReader(session, server.url, clock, timeout_seconds=5)
        loop = ControlLoop(
            workloads=[
                WorkloadSettings(
                    name=name,
                    namespace="ml",
                    queries=QuerySettings(load='load_rps{workload="$workload"}'),
                    replica_capacity_rps=1.0,
                    min_replicas=3,
                )
                for name in names
            ],
            settings=LoopSettings(history_seconds=3600),
            ports=LoopPorts(
                signals=reader, decide=the_core.decide, models=the_core.models, latest=latest, clock=clock
            ),
        )
        reader.source_of = loop.query_source
        await loop.tick()
        await loop.settle()
        clock.advance(15.0)
        before = reader.stats.queries_total
        await loop.tick()
        # Thirty workloads' loads in one request; no history is due again.
        assert reader.stats.queries_total - before == 1
        at = clock.now()
        for name in names:
            published = latest.get("ml", name)
            assert published is not None
            alone = await read_alone(server.url, f'load_rps{{workload="{name}"}}', at)
            load = published.observations.load
            assert (None if load is None else (load.value, load.observed_at)) == alone, name
        # No series, or two (twin), is missing load: the count is held, never read as 0 rps.
        for name in ("twin", "gone-0"):
            decision = latest.get("ml", name).decision
            assert decision.replicas == 3 and decision.reason.value == "held_stale"


@pytest.mark.parametrize(
    ("values", "reason", "expected"),
    [
        pytest.param([[60, "1"], [120, "2.5"]], None, [1.0, 2.5], id="well formed"),
        pytest.param([[60, "+Inf"], [120, "x"]], None, None, id="no finite value: no history"),
        pytest.param([[60, "1"], [120]], "bad_response", None, id="a sample that is no pair"),
        pytest.param([[60, "1"], ["soon", "2"]], "bad_response", None, id="a time that is no number"),
        pytest.param([[60, "1"], [120, 10**400]], None, [1.0, None], id="a value beyond a float is missing"),
    ],
)
async def test_range_samples_are_judged_one_by_one(values, reason, expected):
    async def answer(request: web.Request) -> web.Response:
        matrix = {"resultType": "matrix", "result": [{"metric": {}, "values": values}]}
        return web.json_response({"status": "success", "data": matrix})

    async with serve(answer) as url, aiohttp.ClientSession() as session:
        reader = PrometheusReader(session, url, FakeClock())
        series = await reader.history("up", 60.0, 120.0, 60)
    assert dict(reader.stats.errors_total) == ({reason: 1} if reason else {})
    got = None if series is None else [None if math.isnan(v) else v for v in series.values]
    assert got == expected


async def test_range_requests_wait_for_a_slot_before_their_timeout_starts():
    in_flight: list[asyncio.Event] = []
    release = asyncio.Event()
    most = 0

    async def held(request: web.Request) -> web.Response:
        nonlocal most
        in_flight.append(asyncio.Event())
        most = max(most, sum(not done.is_set() for done in in_flight))
        mine = in_flight[-1]
        await release.wait()
        mine.set()
        matrix = {"resultType": "matrix", "result": [{"metric": {}, "values": [[120, "1"]]}]}
        return web.json_response({"status": "success", "data": matrix})

    async with serve(held) as url, aiohttp.ClientSession() as session:
        reader = PrometheusReader(session, url, FakeClock(), timeout_seconds=30)
        reads = [asyncio.ensure_future(reader.history(f"q{i}", 60.0, 120.0, 60)) for i in range(100)]
        await eventually(lambda: len(in_flight) == RANGE_REQUESTS_AT_ONCE, what="the slots to fill")
        release.set()
        series = await asyncio.gather(*reads)
    assert all(s is not None for s in series) and not reader.stats.errors_total
    assert most == RANGE_REQUESTS_AT_ONCE and len(in_flight) == 100

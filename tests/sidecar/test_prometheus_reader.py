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

from sidecar.prometheus_reader import PrometheusReader, escape_label_value, render_query
from tests.conftest import free_port
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
    # 3 hours at 1 s is 10,801 points: over Prometheus's 11,000 cap only with two requests of ours.
    series = await reader.history('load_rps{workload="llama"}', end - 3 * 3600, end, 1)
    assert series is not None and len(series.values) == 3 * 3600 + 1
    assert reader.stats.queries_total == 2
    assert not np.isnan(series.values[-1])


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
        app.router.add_route("GET", "/{tail:.*}", self.handler)
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

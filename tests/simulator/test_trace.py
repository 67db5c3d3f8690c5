"""Trace parsing: good files become per-step requests with gaps as NaN; bad ones name line and problem."""

from pathlib import Path

import numpy as np
import pytest

from simulator.trace import Trace, TraceError, parse_trace, read_trace


def test_parses_rows_gaps_and_step():
    trace = parse_trace(["timestamp_s,requests\n", "100,6\n", "160,12\n", "280,3\n"], "t.csv")
    assert (trace.start_seconds, trace.step_seconds) == (100, 60)
    np.testing.assert_array_equal(trace.requests, [6, 12, np.nan, 3])
    demand = trace.demand_per_second()
    assert len(demand) == 240
    assert demand[0] == pytest.approx(0.1)
    assert np.isnan(demand[120:180]).all()


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        pytest.param("", 1, "empty file", id="empty file"),
        pytest.param("timestamp_s,requests\n", 1, "no data rows", id="header only"),
        pytest.param("time,count\n1,2\n", 1, "header must be", id="wrong columns"),
        pytest.param("timestamp_s,requests\n0,1\n60,x\n", 3, "'x' is not a number", id="non-numeric count"),
        pytest.param("timestamp_s,requests\nnow,1\n", 2, "timestamp_s 'now'", id="non-numeric timestamp"),
        pytest.param("timestamp_s,requests\n0,1\n60,-4\n", 3, "negative", id="negative count"),
        pytest.param("timestamp_s,requests\n0,1\n60,nan\n", 3, "not finite", id="nan count"),
        pytest.param("timestamp_s,requests\n0,1\n1.5,1\n", 3, "whole number", id="fractional timestamp"),
        pytest.param("timestamp_s,requests\n0,1\n60,1\n30,1\n", 4, "before the previous", id="unsorted"),
        pytest.param("timestamp_s,requests\n0,1\n60,1\n60,2\n", 4, "duplicate timestamp 60", id="duplicate"),
        pytest.param("timestamp_s,requests\n0,1\n60,1,3\n", 3, "2 comma-separated", id="extra field"),
        pytest.param(
            "timestamp_s,requests\n0,1\n60,1\n120,1\n\n190,1\n",
            6,
            "irregular step: 70 s",
            id="irregular step",
        ),
        pytest.param(
            "timestamp_s,requests\n0,1\n60,1\n120,1\n180,1\n185,1\n",
            6,
            "5 s after the previous row is not a multiple of 60 s",
            id="a stray row does not make a 5 s grid",
        ),
        pytest.param(
            "timestamp_s,requests\n0,5\n1000000000000,6\n",
            3,
            "longer than a day",
            id="a step beyond a day",
        ),
        pytest.param(
            "timestamp_s,requests\n0,5\n60,5\n40000020,6\n",
            4,
            "more than 400 days",
            id="a span beyond 400 days",
        ),
    ],
)
def test_bad_input_names_line_and_problem(text, line, problem):
    with pytest.raises(TraceError) as raised:
        parse_trace(text.splitlines(keepends=True), "bad.csv")
    assert raised.value.line == line
    assert problem in raised.value.problem
    assert str(raised.value).startswith(f"bad.csv:{line}: ")


def test_missing_file_names_the_file(tmp_path: Path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(TraceError, match=r"nope\.csv: cannot read file"):
        read_trace(missing)


def test_reads_a_file(tmp_path: Path):
    path = tmp_path / "ok.csv"
    path.write_text("timestamp_s,requests\n0,5\n1,7\n", encoding="utf-8")
    trace = read_trace(path)
    assert trace.step_seconds == 1
    np.testing.assert_array_equal(trace.demand_per_second(), [5.0, 7.0])


@pytest.mark.parametrize(
    ("timestamps", "known"),
    [
        pytest.param([0, 120, 180, 300, 360], [0, 2, 3, 5, 6], id="as many 120 s gaps as 60 s ones"),
        pytest.param([0, 120, 240, 300, 420, 540], [0, 2, 4, 5, 7, 9], id="more 120 s gaps than 60 s ones"),
    ],
)
def test_missing_rows_outnumbering_present_ones_keep_the_true_step(timestamps: list[int], known: list[int]):
    text = "timestamp_s,requests\n" + "".join(f"{t},{i + 1}\n" for i, t in enumerate(timestamps))
    trace = parse_trace(text.splitlines(keepends=True), "gappy.csv")
    assert trace.step_seconds == 60
    assert np.flatnonzero(~np.isnan(trace.requests)).tolist() == known


@pytest.mark.parametrize(
    ("days", "steps"),
    [
        pytest.param(1.0, 1440, id="one day of minutes"),
        pytest.param(0.5 / 1440, 0, id="less than a step: none"),
        pytest.param(10.0, 2880, id="longer than the trace: all of it"),
    ],
)
def test_first_days_keeps_the_steps_that_start_within_them(days: float, steps: int) -> None:
    trace = Trace("t.csv", 600, 60, np.arange(2880, dtype=float))
    first = trace.first_days(days)
    assert (first.source, first.start_seconds, first.step_seconds) == ("t.csv", 600, 60)
    np.testing.assert_array_equal(first.requests, trace.requests[:steps])

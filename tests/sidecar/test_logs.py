"""Structured logs: one line per changed decision, in text or JSON."""

from __future__ import annotations

import io
import json
import logging

import pytest

from autoscaler.decision import Decision, Reason
from autoscaler.observations import Observations
from sidecar.latest_decisions import PublishedDecision
from sidecar.logs import configure_logging, log_decision_change, workload_logger
from sidecar.settings import LogFormat


def published(replicas: int, reason: Reason, at: float = 100.0) -> PublishedDecision:
    decision = Decision(at=at, replicas=replicas, reason=reason, forecast_rps=12.5, lead_seconds=150.0)
    return PublishedDecision("ml", "llama", decision, Observations(at=at, current_replicas=3), at)


@pytest.fixture
def stream():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield io.StringIO()
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize(
    ("previous", "current", "logged"),
    [
        pytest.param(None, published(3, Reason.LOAD), True, id="first decision is logged"),
        pytest.param(
            published(3, Reason.LOAD), published(3, Reason.LOAD, 115), False, id="unchanged is quiet"
        ),
        pytest.param(published(3, Reason.LOAD), published(5, Reason.FORECAST), True, id="replicas changed"),
        pytest.param(published(3, Reason.LOAD), published(3, Reason.HELD_STALE), True, id="reason changed"),
    ],
)
def test_only_changed_decisions_are_logged(stream, previous, current, logged):
    configure_logging(LogFormat.TEXT, "INFO", stream)
    assert log_decision_change(workload_logger("ml", "llama"), previous, current) is logged
    assert (stream.getvalue().count("\n") == 1) is logged


def test_json_line_carries_workload_and_reason(stream):
    configure_logging(LogFormat.JSON, "INFO", stream)
    log_decision_change(workload_logger("ml", "llama"), published(3, Reason.LOAD), published(7, Reason.PANIC))
    entry = json.loads(stream.getvalue())
    assert entry["namespace"] == "ml" and entry["workload"] == "llama"
    assert (entry["replicas"], entry["previous_replicas"], entry["reason"]) == (7, 3, "panic")
    assert entry["message"] == "decision 3 -> 7 (panic)"


def test_text_line_is_key_value(stream):
    configure_logging(LogFormat.TEXT, "INFO", stream)
    log_decision_change(workload_logger("ml", "llama"), None, published(2, Reason.MIN))
    line = stream.getvalue()
    assert "decision none -> 2 (min)" in line
    assert "namespace=ml" in line and "workload=llama" in line and "forecast_rps=12.5" in line
    # Compact: what the message shows is not repeated as key=value.
    assert "reason=" not in line and "replicas=" not in line and "in_message" not in line


@pytest.mark.parametrize("log_format", list(LogFormat))
def test_an_injected_clock_stamps_the_line_with_its_time(stream, log_format):
    # serve --replay stamps trace time: 804571200 is the bundled trace's first second.
    trace_now = [804571200.0]
    configure_logging(log_format, "INFO", stream, now=lambda: trace_now[0])
    logger = workload_logger("ml", "llama")
    log_decision_change(logger, None, published(2, Reason.MIN))
    trace_now[0] += 15.25
    log_decision_change(logger, published(2, Reason.MIN), published(3, Reason.LOAD))
    first, second = stream.getvalue().splitlines()
    if log_format is LogFormat.JSON:
        first, second = json.loads(first)["time"], json.loads(second)["time"]
        assert (first, second) == ("1995-07-01T04:00:00.000+00:00", "1995-07-01T04:00:15.250+00:00")
    else:
        assert first.startswith("1995-07-01 04:00:00,000 INFO sidecar.workload decision none -> 2")
        assert second.startswith("1995-07-01 04:00:15,250 INFO sidecar.workload decision 2 -> 3")

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
    assert "namespace=ml" in line and "reason=min" in line and "workload=llama" in line

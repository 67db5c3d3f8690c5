"""The Grafana dashboard: every panel's PromQL parses (promtool, after Grafana's variables are
substituted) and every metric it reads is one the code exports, a recording rule we ship, or a
named kube-state-metrics series. A real Prometheus scraping a running sidecar is not used here:
the test only proves the queries are well formed and name real series."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml
from prometheus_client import generate_latest

from gpu_agent.exporter import AgentSnapshot, LatestSnapshot, build_registry
from sidecar.telemetry import build_call_metrics, build_telemetry
from tests.deploy.conftest import DASHBOARD_FILE, RULES_FILE

PROMTOOL = shutil.which("promtool")
# Grafana replaces these before the query reaches Prometheus; any valid value proves the syntax.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$namespace": ".*", "$workload": ".*"}
# Series from kube-state-metrics, which every cluster with the Prometheus Operator stack runs.
KUBE_STATE_METRICS = {"kube_deployment_status_replicas_ready"}
_NOT_METRICS = {
    "by",
    "on",
    "without",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "and",
    "or",
    "unless",
    "bool",
}


class _NoDecisions:
    def all(self) -> list:
        return []


def _exported_names() -> set[str]:
    """Sample names from the real collectors: the sidecar's registry and the agent's."""
    latest = LatestSnapshot()
    latest.publish(AgentSnapshot(sampled_at=0.0, nvml_up=False, pod_resources_up=True))
    telemetry = build_telemetry(_NoDecisions(), lambda: 0.0)
    build_call_metrics(telemetry.registry)
    texts = [
        telemetry.render().decode(),
        generate_latest(build_registry(latest, "node-1")).decode(),
    ]
    suffixes = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}
    names = set()
    for text in texts:
        for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE):
            if kind == "counter":
                # The text format's TYPE line names a counter with or without _total by client version.
                names.add(name if name.endswith("_total") else name + "_total")
                continue
            names.update(name + suffix for suffix in suffixes.get(kind, ("",)))
    return names


def _recorded_names() -> set[str]:
    groups = yaml.safe_load(RULES_FILE.read_text())["groups"]
    return {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}


def _queries() -> list[str]:
    dashboard = json.loads(DASHBOARD_FILE.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def _substitute(query: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        query = query.replace(variable, value)
    return query


def metric_names(query: str) -> set[str]:
    """Metric names in a PromQL query: identifiers left after removing strings, label matchers,
    ranges, grouping clauses and function names."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", query)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|on|without|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\b\d+(?:\.\d+)?[smhdwy]*\b", " ", text)  # numbers and durations such as 5m
    identifiers = re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*(?!\s*\()\b(?!\s*\()", text)
    return {name for name in identifiers if name not in _NOT_METRICS}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param(
            'sum by (a) (rate(x_total{a="b"}[5m]))', {"x_total"}, id="function and grouping dropped"
        ),
        pytest.param('a * on (uuid) group_right b{c=~"d"}', {"a", "b"}, id="vector matching"),
        pytest.param(
            "max_over_time(r:rec[5m]) / y offset 5m", {"r:rec", "y"}, id="recording rule and offset"
        ),
    ],
)
def test_metric_names_reads_the_selectors(query, expected):
    assert metric_names(query) == expected


def test_dashboard_has_the_required_panels():
    titles = " | ".join(p["title"].lower() for p in json.loads(DASHBOARD_FILE.read_text())["panels"])
    needles = (
        "demand",
        "forecast",
        "replicas",
        "reason",
        "cold-start",
        "forecast error",
        "gpu",
        "age",
        "signal",
        "cost",
        "idle",
        "1,000 requests",
        "ttft attainment",
        "forecast model",
    )
    for needle in needles:
        assert needle in titles, needle


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (the Makefile installs it)")
def test_every_panel_query_parses(tmp_path):
    # promtool has no bare-expression checker; each query becomes a recording rule it parses.
    rules = [{"record": f"dashboard:panel_{i}", "expr": _substitute(q)} for i, q in enumerate(_queries())]
    path = tmp_path / "dashboard.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_panel_reads_only_series_that_exist():
    exported = _exported_names()
    known = exported | _recorded_names() | KUBE_STATE_METRICS
    used = set().union(*(metric_names(_substitute(q)) for q in _queries()))
    assert used - known == set()

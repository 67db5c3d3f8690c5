"""The alert rules: `promtool check rules` and `promtool test rules` pass on deploy/prometheus, and
the PrometheusRule in deploy/base carries exactly the same groups."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from tests.deploy.conftest import RULES_FILE, RULES_TEST_FILE, find

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (the Makefile installs it)"
)


@needs_promtool
@pytest.mark.parametrize(
    "arguments",
    [
        pytest.param(["check", "rules", str(RULES_FILE)], id="rules parse and are well formed"),
        pytest.param(["test", "rules", str(RULES_TEST_FILE)], id="each alert fires on its scenario only"),
    ],
)
def test_promtool_accepts_the_rules(arguments):
    result = subprocess.run([PROMTOOL, *arguments], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_rejects_a_broken_rule(tmp_path):
    # Guards the test above: promtool must fail on a bad expression, not pass everything.
    rules = yaml.safe_load(RULES_FILE.read_text())
    rules["groups"][-1]["rules"][0]["expr"] = "max by (namespace (autoscaler_signal_age_seconds"
    broken = tmp_path / "broken.rules.yaml"
    broken.write_text(yaml.safe_dump(rules))
    result = subprocess.run(
        [PROMTOOL, "check", "rules", str(broken)], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0


def test_prometheus_rule_carries_the_tested_rules(base_objects):
    rule = find(base_objects, "PrometheusRule", "predictive-autoscaler")
    assert rule["spec"]["groups"] == yaml.safe_load(RULES_FILE.read_text())["groups"]


@pytest.mark.parametrize(
    "alert",
    [
        pytest.param("AutoscalerLoadSignalStale", id="stale signals"),
        pytest.param("AutoscalerForecastErrorHigh", id="forecast error high"),
        pytest.param("AutoscalerPredictionDisabled", id="prediction disabled"),
        pytest.param("AutoscalerPrometheusQueryFailing", id="prometheus queries failing"),
        pytest.param("AutoscalerKubernetesCallsFailing", id="kubernetes calls failing"),
        pytest.param("GpuAgentDown", id="agent down"),
    ],
)
def test_every_required_alert_exists_and_has_a_unit_test(alert):
    names = [r.get("alert") for g in yaml.safe_load(RULES_FILE.read_text())["groups"] for r in g["rules"]]
    assert alert in names
    tests = yaml.safe_load(RULES_TEST_FILE.read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert alert in fired

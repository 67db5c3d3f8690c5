"""Shared loading of the deploy/ tree: rendered kustomize output and the raw files."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
BASE = DEPLOY / "base"
EXAMPLES = DEPLOY / "examples"
EXTERNAL_METRICS = DEPLOY / "external-metrics"
RULES_FILE = DEPLOY / "prometheus" / "alerts.rules.yaml"
RULES_TEST_FILE = DEPLOY / "prometheus" / "alerts.test.yaml"
DASHBOARD_FILE = BASE / "dashboards" / "predictive-autoscaler.json"


def render(directory: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize DIR` (offline), parsed; skips when kubectl is not installed."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (needed for `kubectl kustomize`)")
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


@pytest.fixture(scope="session")
def base_objects() -> list[dict[str, Any]]:
    return render(BASE)


@pytest.fixture(scope="session")
def external_metrics_objects() -> list[dict[str, Any]]:
    return render(EXTERNAL_METRICS)


@pytest.fixture(scope="session")
def example_objects() -> list[dict[str, Any]]:
    """The HPA, KEDA and vLLM examples together (each is its own kustomization: one per workload)."""
    return render(EXAMPLES / "hpa") + render(EXAMPLES / "keda") + render(EXAMPLES / "vllm")

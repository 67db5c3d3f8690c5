"""Shared loading of the deploy/ tree: rendered kustomize output and the raw files, and the
validator of custom-kind objects against their published CRD schemas."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterable
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
CRD_SCHEMAS = Path(__file__).resolve().parent / "crd_schemas"
# The custom kinds' groups: their objects are checked by `crd_validator`, the rest by
# kubernetes-validate.
CRD_GROUPS = ("monitoring.coreos.com/", "keda.sh/", "cert-manager.io/")

CrdValidator = Callable[[Iterable[dict[str, Any]]], dict[str, list[str]]]


def is_custom(obj: dict[str, Any]) -> bool:
    return obj["apiVersion"].startswith(CRD_GROUPS)


def missing_tool(message: str) -> None:
    """CI installs every tool the tests use (`make test`), so there a missing one fails."""
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


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
    """The HPA and KEDA examples together (each is its own kustomization: one per workload)."""
    return render(EXAMPLES / "hpa") + render(EXAMPLES / "keda")


@pytest.fixture(scope="session")
def crd_validator() -> CrdValidator:
    """Validates custom-kind objects against their published CRD schemas (crd_schemas/validate.mjs,
    the validators `make crd-schemas` installs); returns "Kind/name" -> errors for the invalid ones."""
    node = shutil.which("node")
    if node is None or not (CRD_SCHEMAS / "node_modules").is_dir():
        missing_tool("the CRD schema validators are not installed: run `make crd-schemas`")

    def validate(objects: Iterable[dict[str, Any]]) -> dict[str, list[str]]:
        result = subprocess.run(
            [node, str(CRD_SCHEMAS / "validate.mjs")],
            input=json.dumps(list(objects)),
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return {f"{r['kind']}/{r['name']}": r["errors"] for r in json.loads(result.stdout) if r["errors"]}

    return validate

"""The generated settings reference and the chart's values schema match sidecar/settings.py, and
the example settings file loads and shows every field the model has."""

from __future__ import annotations

import json
from typing import Any

import yaml
from pydantic import BaseModel

from sidecar import settings_reference
from sidecar.settings import Settings, load_settings
from tests.deploy.conftest import DEPLOY, REPO

EXAMPLE = DEPLOY / "examples" / "settings.yaml"
REGENERATE = "regenerate with `python -m sidecar.settings_reference` from the repository root"


def test_settings_reference_is_generated_from_the_model():
    written = (REPO / settings_reference.REFERENCE_PATH).read_text(encoding="utf-8")
    assert written == settings_reference.reference_markdown(), REGENERATE


def test_chart_values_schema_carries_the_models_schema():
    written = json.loads((REPO / settings_reference.CHART_SCHEMA_PATH).read_text(encoding="utf-8"))
    assert written == settings_reference.chart_schema(written), REGENERATE


def test_reference_names_every_field_of_every_section():
    text = settings_reference.reference_markdown()
    for definition in settings_reference.settings_schema()["$defs"].values():
        for name in definition.get("properties", {}):
            assert f"| `{name}` |" in text, name


def _paths(model: Any, prefix: str = "") -> set[str]:
    found = set()
    for name, value in model:
        path = f"{prefix}{name}"
        found.add(path)
        if isinstance(value, BaseModel):
            found |= _paths(value, path + ".")
    return found


def test_example_settings_load_and_show_every_field():
    settings = load_settings(EXAMPLE)
    assert settings.workloads
    raw = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    shown = _keys(raw)
    top = _paths(Settings()) - {"workloads"}
    assert top <= shown, sorted(top - shown)
    # Each workload field, and each of its nested objects' fields, appears in some example workload.
    workload_keys = set().union(*(_keys(w) for w in raw["workloads"]))
    full = settings.workloads[0]
    expected = {p for p in _paths(full) if not p.startswith("labels.")}
    for nested in ("behavior.scale_up", "behavior.scale_down", "prewarm"):
        expected |= {f"{nested}.{f}" for f in _nested_fields(nested)}
    assert expected <= workload_keys, sorted(expected - workload_keys)


def _nested_fields(path: str) -> set[str]:
    schema = settings_reference.settings_schema()["$defs"]
    name = {
        "behavior.scale_up": "RulesSettings",
        "behavior.scale_down": "RulesSettings",
        "prewarm": "PrewarmSettings",
    }[path]
    return set(schema[name]["properties"])


def _keys(node: Any, prefix: str = "") -> set[str]:
    if not isinstance(node, dict):
        return set()
    found = set()
    for key, value in node.items():
        found.add(prefix + key)
        if key not in {"workloads", "labels"}:
            found |= _keys(value, f"{prefix}{key}.")
    return found

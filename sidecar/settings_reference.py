"""The settings model (sidecar/settings.py) written out for people and for Helm, so neither drifts.

`python -m sidecar.settings_reference` (from the repository root) rewrites
deploy/settings-reference.md and the `settings` part of the Helm chart's values.schema.json;
tests/deploy/test_settings_reference.py fails when either differs from what this renders.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from sidecar.settings import ENV_PREFIX, Settings

REFERENCE_PATH = Path("deploy/settings-reference.md")
CHART_SCHEMA_PATH = Path("deploy/helm/predictive-autoscaler/values.schema.json")
_CONSTRAINTS = (
    ("minimum", ">= {}"),
    ("exclusiveMinimum", "> {}"),
    ("maximum", "<= {}"),
    ("exclusiveMaximum", "< {}"),
    ("minLength", "length >= {}"),
    ("maxLength", "length <= {}"),
    ("pattern", "matches `{}`"),
)


def settings_schema() -> dict[str, Any]:
    """JSON Schema of the settings file, `$defs` included (references are `#/$defs/...`)."""
    return Settings.model_json_schema(mode="validation")


def chart_schema(chart: Mapping[str, Any]) -> dict[str, Any]:
    """The chart's values schema with `settings` replaced by the model's; the model's `$defs` move
    to the document root, where its `#/$defs/...` references resolve."""
    model = settings_schema()
    defs = model.pop("$defs")
    properties = {**chart["properties"], "settings": model}
    return {**chart, "properties": properties, "$defs": defs}


def reference_markdown() -> str:
    schema = settings_schema()
    defs = schema["$defs"]
    lines = [
        "# Settings reference",
        "",
        "Generated from `sidecar/settings.py` by `python -m sidecar.settings_reference`; a test fails",
        "when this file and the model differ. `deploy/examples/settings.yaml` shows every field with a",
        "comment. Any field can be overridden by the environment: the prefix",
        f"`{ENV_PREFIX}`, then the path in capitals with `__` between levels, e.g.",
        f"`{ENV_PREFIX}LOOP__TICK_SECONDS=30`; lists and mappings as JSON.",
        "",
    ]
    for path, node in _sections("settings", schema, defs):
        lines += [f"## `{path}`", ""]
        description = node.get("description")
        if description:
            lines += [" ".join(description.split()), ""]
        lines += ["| Field | Type | Default | Allowed |", "|---|---|---|---|"]
        required = set(node.get("required", ()))
        for name, field in node.get("properties", {}).items():
            if name in required:
                default = "required"
            elif any("properties" in defs[ref] for ref, _ in _object_refs(field)):
                default = "(its section)"
            else:
                default = _code(field.get("default"))
            lines.append(f"| `{name}` | {_type(field, defs)} | {default} | {_allowed(field, defs)} |")
        lines.append("")
    return "\n".join(lines)


def _sections(path: str, node: Mapping[str, Any], defs: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """Each object in the model once, in the order a reader meets it in the file."""
    yield path, node
    for name, field in node.get("properties", {}).items():
        for ref, suffix in _object_refs(field):
            child = defs[ref]
            if "properties" in child:
                yield from _sections(
                    f"{path}.{name}{suffix}" if path != "settings" else f"{name}{suffix}", child, defs
                )


def _object_refs(field: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    if "$ref" in field:
        yield _ref_name(field["$ref"]), ""
    for option in field.get("anyOf", ()):
        if "$ref" in option:
            yield _ref_name(option["$ref"]), ""
    items = field.get("items")
    if isinstance(items, Mapping) and "$ref" in items:
        yield _ref_name(items["$ref"]), "[]"


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[1]


def _type(field: Mapping[str, Any], defs: Mapping[str, Any]) -> str:
    if "$ref" in field:
        target = defs[_ref_name(field["$ref"])]
        return "string" if "enum" in target else "object"
    if "anyOf" in field:
        return " or ".join(_type(option, defs) for option in field["anyOf"])
    kind = field.get("type", "any")
    if kind == "array":
        return f"list of {_type(field.get('items', {}), defs)}"
    if kind == "object" and "additionalProperties" in field:
        return f"map of {_type(field['additionalProperties'], defs)}"
    return str(kind)


def _allowed(field: Mapping[str, Any], defs: Mapping[str, Any]) -> str:
    parts: list[str] = []
    for node in (field, *field.get("anyOf", ())):
        target = defs[_ref_name(node["$ref"])] if "$ref" in node else node
        if "enum" in target:
            parts.append(", ".join(_code(value) for value in target["enum"]))
        parts += [template.format(target[key]) for key, template in _CONSTRAINTS if key in target]
    return "; ".join(parts).replace("|", "\\|") or ""


def _code(value: Any) -> str:
    return f"`{json.dumps(value)}`".replace("|", "\\|")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, default=REFERENCE_PATH)
    parser.add_argument("--chart-schema", type=Path, default=CHART_SCHEMA_PATH)
    args = parser.parse_args()
    args.reference.write_text(reference_markdown(), encoding="utf-8")
    chart = json.loads(args.chart_schema.read_text(encoding="utf-8"))
    args.chart_schema.write_text(json.dumps(chart_schema(chart), indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

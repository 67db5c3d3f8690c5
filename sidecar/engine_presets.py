"""Engine presets: the PromQL a serving engine's own metrics give each signal, kept as data (one
YAML file per engine in sidecar/presets/) and chosen by `preset:` in a workload's settings.

A preset file holds the engine's name, a `selector` (the label matchers that pick one workload's
pods, with the usual `$namespace`/`$workload` placeholders), `queries` by signal name and, for
engines that count tokens, `token_load` (prompt + generated tokens per second). Query shapes write
`$selector` where the matchers go; it is replaced here, before the settings fill the other
placeholders, so a `$$` in a query survives for them.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import yaml

from autoscaler.observations import Signal

PRESETS_DIR = Path(__file__).resolve().parent / "presets"
_FIELDS = {"engine", "selector", "queries", "token_load"}


class LoadUnit(StrEnum):
    """What the load query counts, and so what `replica_capacity_rps` is counted in."""

    REQUESTS = "requests"
    TOKENS = "tokens"


class PresetError(ValueError):
    """A preset file is malformed; the message names the file and the field."""


@dataclass(frozen=True, slots=True)
class EnginePreset:
    name: str
    engine: str
    selector: str
    queries: Mapping[Signal, str]
    token_load: str | None = None

    def templates(self, load_unit: LoadUnit, selector: str | None = None) -> dict[str, str]:
        """Query templates by signal, `$selector` filled (the preset's own unless one is given).
        Raises ValueError when the unit is tokens and the engine counts none."""
        queries: dict[str, str] = dict(self.queries)
        if load_unit is LoadUnit.TOKENS:
            if self.token_load is None:
                raise ValueError(f"preset {self.name!r} has no token rate: use load_unit: requests")
            queries[Signal.LOAD] = self.token_load
        matchers = self.selector if selector is None else selector
        return {key: " ".join(query.replace("$selector", matchers).split()) for key, query in queries.items()}


def parse_preset(name: str, text: str) -> EnginePreset:
    document = yaml.safe_load(text)
    if not isinstance(document, Mapping):
        raise PresetError(f"preset {name}: expected a mapping of {sorted(_FIELDS)}")
    unknown = set(document) - _FIELDS
    if unknown:
        raise PresetError(f"preset {name}: unknown field(s) {sorted(unknown)}: allowed {sorted(_FIELDS)}")
    queries = document.get("queries")
    if not isinstance(queries, Mapping) or Signal.LOAD not in queries:
        raise PresetError(f"preset {name}: queries must be a mapping with at least {Signal.LOAD}")
    signals = {str(signal) for signal in Signal}
    bad = [key for key in queries if key not in signals]
    if bad:
        raise PresetError(f"preset {name}: queries {bad} are not signals: allowed {sorted(signals)}")
    strings = [document.get("engine"), document.get("selector"), *queries.values()]
    token_load = document.get("token_load")
    if not all(isinstance(value, str) and value.strip() for value in strings) or not (
        token_load is None or isinstance(token_load, str)
    ):
        raise PresetError(f"preset {name}: engine, selector, token_load and every query must be text")
    return EnginePreset(
        name=name,
        engine=document["engine"],
        selector=document["selector"],
        queries={Signal(key): value for key, value in queries.items()},
        token_load=token_load,
    )


@functools.cache
def engine_presets() -> Mapping[str, EnginePreset]:
    """Every shipped preset by name (the file's stem), read once."""
    return {
        path.stem: parse_preset(path.stem, path.read_text(encoding="utf-8"))
        for path in sorted(PRESETS_DIR.glob("*.yaml"))
    }

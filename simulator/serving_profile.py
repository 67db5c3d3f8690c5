"""What one LLM serving replica can do, read from a profile file (YAML) shipped as package data.

The default profile (profiles/llama-3.1-8b-h100.yaml) names its model and GPU and gives the public
source or the assumption behind each number. `request_seconds` is the replica time a request costs
with the batch full: its prefill at the prefill throughput plus its share of every decode step it
is in. The oracle sizes fleets with it and HPA's default request-rate target comes from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import yaml

DEFAULT_PROFILE = Path(__file__).resolve().parent / "profiles" / "llama-3.1-8b-h100.yaml"


class ProfileError(ValueError):
    """A serving profile cannot be used; the message names the file and the field."""


@dataclass(frozen=True, slots=True)
class ServingProfile:
    name: str
    gpus_per_replica: int
    kv_cache_tokens: int
    max_num_seqs: int
    max_num_batched_tokens: int
    prefill_tokens_per_second: float
    decode_base_seconds: float
    decode_per_sequence_seconds: float
    decode_per_kv_token_seconds: float

    def decode_step_seconds(self, sequences: int, kv_tokens: float) -> float:
        """One engine step with `sequences` decoding and `kv_tokens` held in their KV cache."""
        return (
            self.decode_base_seconds
            + self.decode_per_sequence_seconds * sequences
            + self.decode_per_kv_token_seconds * kv_tokens
        )

    def request_seconds(self, input_tokens: np.ndarray, output_tokens: np.ndarray) -> np.ndarray:
        """Replica seconds per request at a full batch: prefill + output x (step / batch).

        Example (default profile): 1,000 prompt and 200 output tokens cost 1000/30000 + 200 x
        (0.0065/256 + 0.00002 + 49e-9 x 1200) = 0.0333 + 0.0208 = 0.054 s.
        """
        tokens = np.asarray(input_tokens, dtype=float)
        out = np.asarray(output_tokens, dtype=float)
        per_token = (
            self.decode_base_seconds / self.max_num_seqs
            + self.decode_per_sequence_seconds
            + self.decode_per_kv_token_seconds * (tokens + out)
        )
        return tokens / self.prefill_tokens_per_second + out * per_token

    def capacity_rps(self, input_tokens: np.ndarray, output_tokens: np.ndarray) -> float:
        """Requests per second one replica serves flat out with this token mix."""
        mean = float(np.mean(self.request_seconds(input_tokens, output_tokens)))
        return 1.0 / mean if mean > 0 else math.inf


def load_profile(path: Path | None = None) -> ServingProfile:
    source = path if path is not None else DEFAULT_PROFILE
    try:
        document = yaml.safe_load(source.read_text(encoding="utf-8"))
    except OSError as error:
        raise ProfileError(f"{source}: cannot read file: {error.strerror or error}") from error
    except yaml.YAMLError as error:
        raise ProfileError(f"{source}: not YAML: {str(error).splitlines()[0]}") from error
    if not isinstance(document, dict):
        raise ProfileError(f"{source}: expected a mapping of profile fields")
    names = [f.name for f in fields(ServingProfile)]
    missing = [n for n in names if n not in document]
    unknown = [str(k) for k in document if k not in names]
    if missing or unknown:
        problem = f"missing {', '.join(missing)}" if missing else f"unknown field {', '.join(unknown)}"
        raise ProfileError(f"{source}: {problem}; the fields are {', '.join(names)}")
    values: dict[str, object] = {}
    for name in names:
        value = document[name]
        if name == "name":
            if not isinstance(value, str) or not value.strip():
                raise ProfileError(f"{source}: name must be a non-empty string")
            values[name] = value
            continue
        whole = name in ("gpus_per_replica", "kv_cache_tokens", "max_num_seqs", "max_num_batched_tokens")
        valid = isinstance(value, int) if whole else isinstance(value, int | float)
        if isinstance(value, bool) or not valid or not math.isfinite(value):
            kind = "a whole number" if whole else "a number"
            raise ProfileError(f"{source}: {name}={value!r} must be {kind}")
        positive = name != "decode_per_sequence_seconds" and name != "decode_per_kv_token_seconds"
        if value < 0 or (positive and value == 0):
            raise ProfileError(f"{source}: {name}={value!r} must be {'> 0' if positive else '>= 0'}")
        values[name] = value
    return ServingProfile(**values)  # type: ignore[arg-type]

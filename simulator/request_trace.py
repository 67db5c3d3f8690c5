"""Per-request traces: one row per request with its arrival and token counts, for the LLM replay.

Three formats are recognised by their first line:
- Azure LLM inference 2023 (Splitwise) CSV: `TIMESTAMP,ContextTokens,GeneratedTokens`, TIMESTAMP a
  wall-clock time with up to 7 fractional digits, read as UTC (the dataset does not say).
- Mooncake (FAST'25) JSON lines: objects with `timestamp` (milliseconds since the trace start),
  `input_length` and `output_length`; other keys (`hash_ids`) are ignored.
- Plain CSV: `arrival_s,input_tokens,output_tokens`, arrival in seconds (any origin).

Bad rows raise the TraceError of simulator/trace.py (`<file>:<line>: <problem>`). Arrivals must not
go back in time; a request needs at least one prompt token and one generated token (a request
that generates nothing never has a first token to time).
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from simulator.trace import MAX_SPAN_SECONDS, TraceError

AZURE_HEADER = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
PLAIN_HEADER = ("arrival_s", "input_tokens", "output_tokens")
# A prompt beyond this is not a request any served model takes (Llama 3.1 stops at 131,072).
MAX_TOKENS = 10_000_000


@dataclass(frozen=True, slots=True, eq=False)
class RequestTrace:
    """`arrival_s[i]` is seconds since `start_seconds` (sorted); tokens are int64 arrays."""

    source: str
    start_seconds: float
    arrival_s: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray

    def __len__(self) -> int:
        return len(self.arrival_s)

    @property
    def duration_seconds(self) -> int:
        """Whole seconds from the trace start to just after its last arrival."""
        return math.floor(self.arrival_s[-1]) + 1 if len(self) else 0

    def arrivals_per_second(self) -> np.ndarray:
        """Requests arriving in each second of the span (the request-rate view of the trace)."""
        return np.bincount(self.arrival_s.astype(np.int64), minlength=self.duration_seconds).astype(float)


def is_request_trace(path: Path) -> bool:
    """Whether the file's first line is one of the per-request headers (False if unreadable:
    the reader that follows reports that)."""
    try:
        with path.open(encoding="utf-8") as lines:
            first = next(lines, "")
    except (OSError, UnicodeDecodeError):
        return False
    return _format(first) is not None


def read_request_trace(path: Path) -> RequestTrace:
    try:
        with path.open(encoding="utf-8") as lines:
            return parse_request_trace(lines, str(path))
    except OSError as error:
        raise TraceError(str(path), 0, f"cannot read file: {error.strerror or error}") from error
    except UnicodeDecodeError as error:
        raise TraceError(str(path), 0, f"not UTF-8 text: {error.reason}") from error


def parse_request_trace(lines: Iterable[str], source: str) -> RequestTrace:
    iterator = iter(lines)
    first = next(iterator, "")
    kind = _format(first)
    if kind is None:
        raise TraceError(
            source,
            1,
            f"header must be {','.join(PLAIN_HEADER)!r}, {','.join(AZURE_HEADER)!r} or a Mooncake "
            f"JSON line, got {first.strip()[:60]!r}",
        )
    rows = (
        _mooncake_rows(first, iterator, source) if kind == "mooncake" else _csv_rows(kind, iterator, source)
    )
    arrivals: list[float] = []
    inputs: list[int] = []
    outputs: list[int] = []
    for line, arrival, prompt, generated in rows:
        if arrivals and arrival < arrivals[-1]:
            raise TraceError(source, line, f"arrival {arrival:g} s is before the previous {arrivals[-1]:g} s")
        if arrivals and arrival - arrivals[0] > MAX_SPAN_SECONDS:
            raise TraceError(source, line, f"arrival {arrival:g} s makes the trace span more than 400 days")
        arrivals.append(arrival)
        inputs.append(prompt)
        outputs.append(generated)
    if not arrivals:
        raise TraceError(source, 1, "no requests after the header")
    start = math.floor(arrivals[0])
    return RequestTrace(
        source,
        float(start),
        np.asarray(arrivals, dtype=float) - start,
        np.asarray(inputs, dtype=np.int64),
        np.asarray(outputs, dtype=np.int64),
    )


def write_request_trace(path: Path, arrival_s: np.ndarray, inputs: np.ndarray, outputs: np.ndarray) -> None:
    """The plain format, arrivals to the microsecond."""
    with path.open("w", encoding="utf-8") as out:
        out.write(",".join(PLAIN_HEADER) + "\n")
        out.writelines(
            f"{a:.6f},{i},{o}\n"
            for a, i, o in zip(arrival_s.tolist(), inputs.tolist(), outputs.tolist(), strict=True)
        )


def _format(first_line: str) -> str | None:
    text = first_line.strip().lstrip("\ufeff")
    header = tuple(field.strip() for field in text.split(","))
    if header == PLAIN_HEADER:
        return "plain"
    if header == AZURE_HEADER:
        return "azure"
    if text.startswith("{"):
        try:
            row = json.loads(text)
        except ValueError:
            return None
        if isinstance(row, dict) and {"timestamp", "input_length", "output_length"} <= row.keys():
            return "mooncake"
    return None


Row = tuple[int, float, int, int]


def _csv_rows(kind: str, lines: Iterator[str], source: str) -> Iterator[Row]:
    names = PLAIN_HEADER if kind == "plain" else AZURE_HEADER
    for number, raw in enumerate(lines, start=2):
        text = raw.strip()
        if not text:
            continue
        fields = text.split(",")
        if len(fields) != 3:
            raise TraceError(source, number, f"expected 3 comma-separated fields, got {len(fields)}")
        when = fields[0].strip()
        arrival = _seconds(when, source, number) if kind == "plain" else _azure_time(when, source, number)
        yield (
            number,
            arrival,
            _tokens(fields[1].strip(), names[1], source, number),
            _tokens(fields[2].strip(), names[2], source, number),
        )


def _mooncake_rows(first: str, rest: Iterator[str], source: str) -> Iterator[Row]:
    for number, raw in enumerate(itertools.chain((first,), rest), start=1):
        text = raw.strip()
        if not text:
            continue
        try:
            row = json.loads(text)
        except ValueError as error:
            raise TraceError(source, number, f"not a JSON object: {error}") from None
        if not isinstance(row, dict):
            raise TraceError(source, number, "not a JSON object")
        missing = [k for k in ("timestamp", "input_length", "output_length") if k not in row]
        if missing:
            raise TraceError(source, number, f"missing {', '.join(missing)}")
        millis = _seconds(str(row["timestamp"]), source, number, "timestamp")
        yield (
            number,
            millis / 1000.0,
            _tokens(str(row["input_length"]), "input_length", source, number),
            _tokens(str(row["output_length"]), "output_length", source, number),
        )


def _seconds(text: str, source: str, line: int, name: str = "arrival_s") -> float:
    try:
        value = float(text)
    except ValueError:
        raise TraceError(source, line, f"{name} {text[:30]!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise TraceError(source, line, f"{name} {text[:30]!r} must be a finite number >= 0")
    return value


def _azure_time(text: str, source: str, line: int) -> float:
    # Seven fractional digits (100 ns) are more than datetime parses; microseconds are plenty.
    whole, dot, fraction = text.partition(".")
    try:
        parsed = datetime.fromisoformat(whole + (dot + fraction[:6] if dot else ""))
    except ValueError:
        raise TraceError(
            source, line, f"TIMESTAMP {text[:40]!r} is not a time like 2023-11-16 18:15:46.6805900"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _tokens(text: str, name: str, source: str, line: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise TraceError(source, line, f"{name} {text[:30]!r} is not a whole number") from None
    if not 1 <= value <= MAX_TOKENS:
        raise TraceError(source, line, f"{name} {value} is out of range: allowed 1 to {MAX_TOKENS}")
    return value

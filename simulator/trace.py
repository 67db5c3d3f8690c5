"""Request traces: parse and validate `timestamp_s,requests` files into per-second demand.

A trace row counts the requests that arrived in the step starting at `timestamp_s`. The step is
fixed per file and detected from the gaps between rows (`_detect_step`); a missing row (a gap that is a
whole multiple of the step) is an unknown step, kept as NaN, never as zero.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HEADER = ("timestamp_s", "requests")
# A replay holds one value per second of the span: 400 days is 35 million, a few hundred MB.
MAX_SPAN_SECONDS = 400 * 86_400
MAX_STEP_SECONDS = 86_400


class TraceError(ValueError):
    """A trace cannot be used; the message names the source, the line and the problem."""

    def __init__(self, source: str, line: int, problem: str) -> None:
        # Line 0 means the file as a whole (missing, unreadable).
        super().__init__(f"{source}:{line}: {problem}" if line > 0 else f"{source}: {problem}")
        self.source = source
        self.line = line
        self.problem = problem


@dataclass(frozen=True, slots=True, eq=False)
class Trace:
    """`requests[i]` arrived in [start_seconds + i*step_seconds, start_seconds + (i+1)*step_seconds);
    NaN where the file has no row for that step."""

    source: str
    start_seconds: int
    step_seconds: int
    requests: np.ndarray

    @property
    def duration_seconds(self) -> int:
        return len(self.requests) * self.step_seconds

    def rate_rps(self) -> np.ndarray:
        """Mean request rate per step (requests per second), NaN in gaps."""
        return self.requests / self.step_seconds

    def demand_per_second(self) -> np.ndarray:
        """Demand on a one-second grid, piecewise constant within each step, NaN in gaps."""
        return np.repeat(self.rate_rps(), self.step_seconds)

    def first_days(self, days: float) -> Trace:
        """The steps that start within the first `days` days (a bench's shorter replay)."""
        steps = int(days * 86400 // self.step_seconds)
        return Trace(self.source, self.start_seconds, self.step_seconds, self.requests[:steps])


def parse_trace(lines: Iterable[str], source: str) -> Trace:
    """Parse the text of a trace file; raise TraceError naming the first bad line."""
    timestamps: list[int] = []
    counts: list[float] = []
    row_lines: list[int] = []
    last_line = 0
    for number, raw in enumerate(lines, start=1):
        last_line = number
        text = raw.strip()
        if number == 1:
            header = tuple(field.strip() for field in text.split(","))
            if header != HEADER:
                raise TraceError(source, 1, f"header must be 'timestamp_s,requests', got {text[:60]!r}")
            continue
        if not text:
            continue
        fields = text.split(",")
        if len(fields) != 2:
            raise TraceError(source, number, f"expected 2 comma-separated fields, got {len(fields)}")
        timestamp = _parse_timestamp(fields[0].strip(), source, number)
        count = _parse_count(fields[1].strip(), source, number)
        if timestamps and timestamp == timestamps[-1]:
            raise TraceError(source, number, f"duplicate timestamp {timestamp}")
        if timestamps and timestamp < timestamps[-1]:
            raise TraceError(source, number, f"timestamp {timestamp} is before the previous {timestamps[-1]}")
        timestamps.append(timestamp)
        counts.append(count)
        row_lines.append(number)
    if last_line == 0:
        raise TraceError(source, 1, "empty file: expected header 'timestamp_s,requests'")
    if not timestamps:
        raise TraceError(source, last_line, "no data rows after the header")
    step = _detect_step(timestamps, row_lines, source)
    start = timestamps[0]
    if step > MAX_STEP_SECONDS:
        raise TraceError(source, row_lines[1], f"step of {step} s is longer than a day")
    if timestamps[-1] - start + step > MAX_SPAN_SECONDS:
        raise TraceError(
            source, row_lines[-1], f"timestamp {timestamps[-1]} makes the trace span more than 400 days"
        )
    requests = np.full((timestamps[-1] - start) // step + 1, np.nan)
    requests[(np.asarray(timestamps) - start) // step] = counts
    return Trace(source, start, step, requests)


def read_trace(path: Path) -> Trace:
    """Read and parse a trace file; a missing or unreadable file is a TraceError too."""
    try:
        with path.open(encoding="utf-8") as lines:
            return parse_trace(lines, str(path))
    except OSError as error:
        raise TraceError(str(path), 0, f"cannot read file: {error.strerror or error}") from error
    except UnicodeDecodeError as error:
        raise TraceError(str(path), 0, f"not UTF-8 text: {error.reason}") from error


def _parse_timestamp(text: str, source: str, line: int) -> int:
    try:
        value = float(text)
    except ValueError:
        raise TraceError(source, line, f"timestamp_s {text[:30]!r} is not a number") from None
    if not math.isfinite(value) or value != int(value):
        raise TraceError(source, line, f"timestamp_s {text[:30]!r} is not a whole number of seconds")
    return int(value)


def _parse_count(text: str, source: str, line: int) -> float:
    try:
        value = float(text)
    except ValueError:
        raise TraceError(source, line, f"requests {text[:30]!r} is not a number") from None
    if not math.isfinite(value):
        raise TraceError(source, line, f"requests {text[:30]!r} is not finite")
    if value < 0:
        raise TraceError(source, line, f"requests {text[:30]!r} is negative")
    return value


def _detect_step(timestamps: list[int], row_lines: list[int], source: str) -> int:
    """The most common gap between rows, when every gap is a whole multiple of it. Otherwise the
    greatest common divisor of the gaps, if at least half of the steps on that grid have a row:
    with every other row missing, 120 s gaps can outnumber the 60 s ones, and the step is still
    60 s. A stray row (125 s in a 60 s file) would make a grid of 5 s steps that is mostly
    empty; that is reported as an irregular gap at the line of the later row."""
    if len(timestamps) == 1:
        return 1
    gaps = np.diff(np.asarray(timestamps))
    common = int(Counter(gaps.tolist()).most_common(1)[0][0])
    irregular = np.flatnonzero(gaps % common != 0)
    if not irregular.size:
        return common
    finer = math.gcd(*gaps.tolist())
    if len(timestamps) >= 0.5 * ((timestamps[-1] - timestamps[0]) // finer + 1):
        return finer
    row = int(irregular[0]) + 1
    raise TraceError(
        source,
        row_lines[row],
        f"irregular step: {int(gaps[row - 1])} s after the previous row is not a multiple of {common} s",
    )

"""`predictive-autoscaler export`: a workload's request rate from Prometheus as a trace file, so
that `replay` and `backtest` judge the policies on its own history before they scale it.

The rate comes from the workload's own load query (`--config FILE --workload NAMESPACE/NAME`,
rendered as the control loop renders it) or from any PromQL giving requests per second
(`--query`). A row holds rate x step, the requests of the step that starts at `timestamp_s`
(Prometheus's value at t describes the step ending at t); steps without a value are left out,
which `replay` and `backtest` read as unknown load, never as zero. Bad arguments exit 2 with one
line, `export: <problem>`; a Prometheus that gives no usable data exits 1 the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import aiohttp
import numpy as np
import yarl
from pydantic import ValidationError

from autoscaler.observations import Signal
from forecasting.series import LoadSeries
from sidecar.clock import SystemClock
from sidecar.control_loop import workload_queries
from sidecar.prometheus_reader import PrometheusReader
from sidecar.settings import PrometheusSettings, Settings, SettingsError, WorkloadSettings, load_settings
from simulator.trace import HEADER

# A one-shot export may ask for 10,000 points at a time from a busy Prometheus; the control
# loop's 5 s budget per query is for a tick, not for this.
TIMEOUT_SECONDS = 60.0
MAX_DAYS = 400.0


class ExportError(Exception):
    """A problem with the command line or the data; `exit_code` is 2 for arguments, 1 for data."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True, slots=True)
class Source:
    url: str
    query: str


def register(parser: argparse.ArgumentParser) -> None:
    chosen = parser.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--workload", metavar="NAMESPACE/NAME", help="this workload's load query (--config)")
    chosen.add_argument("--query", help="PromQL giving the request rate in requests per second")
    parser.add_argument("--config", type=Path, help="settings file: its workloads and prometheus.url")
    parser.add_argument("--prometheus", metavar="URL", help="default: the config's, else localhost:9090")
    parser.add_argument("--days", type=float, default=7.0, help="how far back from now (default 7)")
    parser.add_argument("--step-seconds", type=int, default=60, help="trace step (default 60)")
    parser.add_argument("--output", type=Path, help="trace file to write (default: standard output)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        if not 0 < args.days <= MAX_DAYS:
            raise ExportError(f"--days={args.days:g}: allowed more than 0, at most {MAX_DAYS:g}")
        if not 1 <= args.step_seconds <= 3600:
            raise ExportError(f"--step-seconds={args.step_seconds}: allowed 1 to 3600")
        if args.days * 86400 < args.step_seconds:
            raise ExportError(f"--days={args.days:g} is shorter than one step of {args.step_seconds} s")
        source = resolve_source(args)
        end = time.time()
        series, failures = asyncio.run(fetch(source, end - args.days * 86400, end, args.step_seconds))
        rows = list(trace_rows(series))
        if failures:
            print(f"export: warning: {failures}; the steps it covered are left out", file=sys.stderr)
        write_rows(rows, args.output)
    except ExportError as error:
        print(f"export: {error}", file=sys.stderr)
        return error.exit_code
    return 0


def resolve_source(args: argparse.Namespace) -> Source:
    """The URL and PromQL to read; --prometheus wins over the config's URL."""
    settings = _load(args.config) if args.config is not None else None
    if args.workload is not None:
        if settings is None:
            raise ExportError("--workload needs --config, the settings file that lists it")
        query = workload_queries(_find_workload(settings, args.workload))[Signal.LOAD]
    else:
        query = args.query.strip()
        if not query:
            raise ExportError("--query is empty")
    url = args.prometheus
    if url is None:
        url = settings.prometheus.url if settings is not None else PrometheusSettings().url
    try:
        url = PrometheusSettings(url=url).url
        parsed = yarl.URL(url)  # ValueError on a port out of range or a broken IPv6 host
    except (ValidationError, ValueError):
        raise ExportError(f"--prometheus={url!r}: expected an http:// or https:// URL") from None
    if not parsed.host:
        raise ExportError(f"--prometheus={url!r}: the URL names no host")
    return Source(url, query)


def _load(path: Path) -> Settings:
    try:
        return load_settings(path)
    except SettingsError as error:
        raise ExportError(f"{path}: {error}") from None


def _find_workload(settings: Settings, key: str) -> WorkloadSettings:
    namespace, slash, name = key.partition("/")
    if not slash or not namespace or not name:
        raise ExportError(f"--workload={key!r}: expected NAMESPACE/NAME")
    for workload in settings.workloads:
        if (workload.namespace, workload.name) == (namespace, name):
            return workload
    known = ", ".join(f"{w.namespace}/{w.name}" for w in settings.workloads) or "none"
    raise ExportError(f"--workload={key!r} is not in the settings file; it lists: {known}")


async def fetch(source: Source, start: float, end: float, step_seconds: int) -> tuple[LoadSeries, str | None]:
    """The rate on the step grid and, when some of the requests failed, what the last one said.
    Raises ExportError (exit 1) when nothing usable came back."""
    async with aiohttp.ClientSession() as session:
        reader = PrometheusReader(session, source.url, SystemClock(), TIMEOUT_SECONDS)
        series = await reader.history(source.query, start, end, step_seconds)
    failed = sum(reader.stats.errors_total.values())
    if series is None:
        why = reader.stats.last_error or "the query matched no series"
        raise ExportError(f"no data from {source.url} for {source.query!r}: {why}", exit_code=1)
    summary = f"{failed} of {reader.stats.queries_total} range requests failed ({reader.stats.last_error})"
    return series, summary if failed else None


def trace_rows(series: LoadSeries) -> Iterator[tuple[int, float]]:
    """(step start, requests in the step) for every step with a value; a negative rate is an
    error (exit 1) naming where, since no request count can be below zero."""
    step = series.step_seconds
    for index in np.flatnonzero(~np.isnan(series.values)):
        at = round(series.start + index * step)
        rate = float(series.values[index])
        if rate < 0:
            raise ExportError(
                f"the query gave a negative rate ({rate:g}/s) for the step at {at}: "
                "expected requests per second",
                exit_code=1,
            )
        yield at, rate * step


def write_rows(rows: list[tuple[int, float]], output: Path | None) -> None:
    if output is None:
        _write(rows, sys.stdout)
        return
    try:
        with output.open("w", encoding="utf-8") as out:
            _write(rows, out)
    except OSError as error:
        raise ExportError(f"{output}: cannot write: {error.strerror or error}") from None


def _write(rows: list[tuple[int, float]], out: TextIO) -> None:
    out.write(",".join(HEADER) + "\n")
    for at, requests in rows:
        # 12 significant digits: whole counts print as integers, and a count stays exact to the
        # request up to 10^12 per step.
        out.write(f"{at},{requests:.12g}\n")

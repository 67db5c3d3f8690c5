"""Scale to zero and back, measured through the shipped path on real traces with idle stretches.

Usage: .venv/bin/python bench/scale_to_zero.py [--client m-large/69] [--objectives 0.001,0.05]
    [--models recent_quantiles,seasonal_naive_daily] [--cold-start-seconds 120] [--workers 2]
       .venv/bin/python bench/scale_to_zero.py --trace nasa-http-1995/series_jul.csv --thin 300
    --days 14 --capacity-of-p99 2

Two kinds of real load, both from ../shared/data:
- `--client` (the default): one client of ServeGen's release (alibaba-servegen-llm, read from
  its tarball: the mean rate of each 600 s window of `data/language/<model>/chunk-<id>-trace.csv`)
  that calls by day and is silent for hours at night, at the same hours every day: the load a
  scale to zero is for. m-large client 69: half its windows are empty, 97 % of its empty windows
  were empty at the same time the day before, and the median silence is 65 windows (11 hours).
- `--trace` with `--thin`: a per-minute trace with each request kept with probability 1/thin
  (binomial per step, seed 0): the daily cycle stays, the quiet hours become idle minutes
  between requests that arrive at random, which no forecast can time.
A replica serves `--capacity-of-p99` times the trace's p99 per-step rate flat out (default 1/20,
every replay table's rule; 2 on a thinned trace makes the busiest minutes fit one replica, so
the question is only the one between zero and one). Rows, each one replay (deterministic:
seeded cold starts, inline fits), cold start `--cold-start-seconds` median (lognormal per pod,
spread 0.2):
- HPA, min 1: the HPA baseline on the request rate at target 0.7;
- predictive through the example HPA, min 1 (what `serve` runs with the HPA example);
- KEDA, min 0, reactive: a ScaledObject with a Prometheus trigger on the rate, activation 0,
  pollingInterval 15 s, cooldownPeriod 300 s (simulator/keda.py): what users configure today;
- predictive through the example ScaledObject, min 0, the forecast deciding zero (one row per
  `--objectives` value, the declared unserved share, and `--models` value, the forecast model);
- the oracle with min 0: it knows every arrival and starts a replica one median cold start
  before it, the fewest replica-hours that serve everything (simulator/policies.Oracle).
Columns: replica-hours, violation (unserved share), the share of demand and the requests that
arrived while no replica was ready (met a cold workload: in this replay, as in a cluster without
a request buffer, such a request is unserved), and the hours at zero ready. Skips (exit 0) when
../shared/data is absent.
"""

from __future__ import annotations

import argparse
import tarfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from forecasting import DEFAULT_MODEL, MODELS
from sidecar.replay_command import build_policy
from sidecar.replay_simulation import LoopOptions
from sidecar.settings import ForecastSettings, ObjectiveSettings
from simulator.replay import ReplaySettings, replay_trace
from simulator.report import scores
from simulator.trace import Trace, read_trace

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
SERVEGEN = DATA / "alibaba-servegen-llm" / "servegen_traces.tar.gz"
DEFAULT_CLIENT = "m-large/69"
WINDOW_SECONDS = 600
DEFAULT_OBJECTIVE = ObjectiveSettings().unserved_share
CAPACITY_OF_P99 = 1 / 20

# (label, policy, consumer, min replicas, objective or None, forecast model)
Row = tuple[str, str, str, int, float | None, str]
# Where the load comes from: (client, trace, thin, days).
Source = tuple[str | None, str | None, float, float | None]
# (label, replica-hours, violation, cold share, cold requests, seconds at zero ready, wall s)
Figures = tuple[str, float, float, float, float, int, float]


def thinned(trace: Trace, thin: float, days: float | None) -> Trace:
    """Each request kept with probability 1/thin (seed 0); the first `days` only."""
    counts = (trace if days is None else trace.first_days(days)).requests
    rng = np.random.default_rng(0)
    known = ~np.isnan(counts)
    kept = np.full(counts.shape, np.nan)
    kept[known] = rng.binomial(counts[known].astype(np.int64), 1 / thin)
    return Trace(trace.source, trace.start_seconds, trace.step_seconds, kept)


def servegen_client(client: str) -> Trace:
    """One ServeGen client's requests per 600 s window, e.g. `m-large/69`."""
    model, number = client.split("/")
    member = f"data/language/{model}/chunk-{number}-trace.csv"
    with tarfile.open(SERVEGEN) as tar:
        extracted = tar.extractfile(member)
        if extracted is None:
            raise SystemExit(f"--client {client}: {member} is not a file in {SERVEGEN.name}")
        lines = extracted.read().decode().splitlines()
    rows = [(int(line.split(",")[0]), float(line.split(",")[1])) for line in lines if line]
    starts = [start for start, _ in rows]
    if starts != list(range(0, WINDOW_SECONDS * len(rows), WINDOW_SECONDS)):
        raise SystemExit(f"--client {client}: windows are not a gap-free 600 s grid from 0")
    requests = np.array([round(rate * WINDOW_SECONDS) for _, rate in rows], dtype=float)
    return Trace(f"ServeGen {client}", 0, WINDOW_SECONDS, requests)


def load(source: Source) -> Trace:
    client, relative, thin, days = source
    if client is not None:
        return servegen_client(client)
    assert relative is not None
    return thinned(read_trace(DATA / relative), thin, days)


def run_row(job: tuple[Row, Source, float, int]) -> Figures:
    (label, policy, consumer, min_replicas, objective, model), source, capacity_of_p99, cold_start = job
    trace = load(source)
    rates = trace.rate_rps()
    p99 = float(np.percentile(rates[~np.isnan(rates)], 99))
    settings = ReplaySettings(
        replica_capacity_rps=p99 * capacity_of_p99,
        cold_start_seconds=cold_start,
        min_replicas=min_replicas,
    )
    options = LoopOptions(
        forecast=ForecastSettings(model=model),
        objective=ObjectiveSettings(unserved_share=objective or DEFAULT_OBJECTIVE),
        consumer=consumer,
    )
    began = time.perf_counter()
    run = replay_trace(trace, settings, [build_policy(policy, settings, options)])
    figure = scores(run)[0]
    known = run.demand_rps
    ready = run.occupancies[0].ready
    cold_requests = float(np.sum(known[ready == 0]))
    zero_seconds = int(np.count_nonzero(ready == 0))
    return (
        label,
        figure.replica_hours,
        figure.violation_ratio,
        figure.cold_demand_share,
        cold_requests,
        zero_seconds,
        time.perf_counter() - began,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--client", default=DEFAULT_CLIENT, help="a ServeGen client: model/chunk id")
    parser.add_argument("--trace", help="instead of --client: a per-step trace under ../shared/data")
    parser.add_argument("--thin", type=float, default=1.0, help="with --trace: keep one request in this many")
    parser.add_argument("--days", type=float, help="with --trace: replay the first days only (default: all)")
    parser.add_argument(
        "--capacity-of-p99",
        type=float,
        default=CAPACITY_OF_P99,
        help="a replica serves this times the p99 per-step rate (default 1/20)",
    )
    parser.add_argument("--cold-start-seconds", type=int, default=120)
    parser.add_argument(
        "--objectives",
        default=f"{DEFAULT_OBJECTIVE:g}",
        help="comma-separated unserved shares for the predictive KEDA rows (default: the settings')",
    )
    parser.add_argument(
        "--models",
        default=DEFAULT_MODEL,
        help=f"comma-separated forecast models for the predictive KEDA rows (default {DEFAULT_MODEL})",
    )
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"skipped: {DATA} is absent")
        return 0
    objectives = [float(o) for o in args.objectives.split(",") if o.strip()]
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        parser.error(f"--models: unknown {unknown or 'empty list'}; choose from {', '.join(MODELS)}")
    rows: list[Row] = [
        ("HPA, min 1", "hpa", "hpa", 1, None, DEFAULT_MODEL),
        ("predictive via HPA, min 1", "predictive", "hpa", 1, None, DEFAULT_MODEL),
        ("KEDA reactive, min 0", "keda", "hpa", 0, None, DEFAULT_MODEL),
        *(
            (f"predictive via KEDA, min 0, objective {o:g}, {m}", "predictive", "keda", 0, o, m)
            for m in models
            for o in objectives
        ),
        ("oracle, min 0", "oracle", "hpa", 0, None, DEFAULT_MODEL),
    ]
    source: Source = (None if args.trace else args.client, args.trace, args.thin, args.days)
    jobs = [(row, source, args.capacity_of_p99, args.cold_start_seconds) for row in rows]
    began = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        results = list(pool.map(run_row, jobs))
    wall = time.perf_counter() - began
    trace = load(source)
    requests = float(np.nansum(trace.requests))
    days = trace.duration_seconds / 86400
    name = f"ServeGen {args.client}" if args.trace is None else f"{args.trace} thinned 1/{args.thin:g}"
    print(
        f"{name}: {days:.1f} days, {requests:,.0f} requests; cold start "
        f"{args.cold_start_seconds} s median (spread 0.2, seed 0); "
        f"a replica serves {args.capacity_of_p99:g} x the p99 per-step rate\n"
    )
    print(
        "| policy | replica-hours | violation | demand at zero ready | requests at zero ready "
        "| hours at zero ready | wall s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, hours, violation, share, cold, zero, seconds in results:
        print(
            f"| {label} | {hours:,.1f} | {violation:.5f} | {share:.5f} | {cold:,.0f} "
            f"| {zero / 3600:,.1f} | {seconds:.0f} |"
        )
    print(f"\n{len(jobs)} replays, {args.workers} workers, {wall:.0f} s wall")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`predictive-autoscaler backtest`: rolling-origin backtest of forecasters on a trace file.

Scores the bundled trace unless `--trace` names another. Prints one row per model and lead (lead
in steps = ceil(lead / step), so every lead under 10 minutes is one step on a 10-minute trace) or,
with `--json`, the same figures as JSON. Each row says what its fits were (`lightgbm:last_value`:
LightGBM fell back to last value on too little history, and a note under the table says so).
Bad input exits 2 with one line: `backtest: <problem>`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tqdm import tqdm

from forecasting import MODELS, BacktestResult, LoadSeries, backtest
from sidecar.cli import BUNDLED_TRACE
from simulator.trace import TraceError, read_trace

DEFAULT_MODELS = tuple(MODELS)


class BacktestError(Exception):
    """A problem with the command line; the message is the whole error line."""


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trace", type=Path, default=BUNDLED_TRACE, help="timestamp_s,requests CSV (default: bundled trace)"
    )
    parser.add_argument("--models", help=f"comma-separated, from {', '.join(MODELS)} (default: all)")
    parser.add_argument("--test-days", type=float, default=3.0, help="span scored at the end (default 3)")
    parser.add_argument("--stride-minutes", type=float, default=10.0, help="between origins (default 10)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        models = parse_models(args.models)
        # Written so that NaN, which fails every comparison, is refused too.
        if not (0 < args.test_days <= 400 and 0 < args.stride_minutes <= 1440):
            raise BacktestError("--test-days must be in (0, 400] and --stride-minutes in (0, 1440]")
        series = load_series(args.trace)
    except (BacktestError, TraceError) as error:
        print(f"backtest: {error}", file=sys.stderr)
        return 2
    results = [
        score_model(series, name, args.test_days, args.stride_minutes, args.quiet or args.json)
        for name in models
    ]
    if args.json:
        print(json.dumps(results_as_json(str(args.trace), series, results), indent=2))
    else:
        print(format_table(str(args.trace), series, results))
    return 0


def parse_models(text: str | None) -> list[str]:
    if text is None:
        return list(DEFAULT_MODELS)
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in MODELS]
    if unknown or not names:
        raise BacktestError(
            f"unknown model(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(MODELS)}"
        )
    return names


def load_series(path: Path) -> LoadSeries:
    """The trace as a request rate (requests per step / step seconds), gaps kept as NaN."""
    trace = read_trace(path)
    return LoadSeries(float(trace.start_seconds), float(trace.step_seconds), trace.rate_rps())


def score_model(
    series: LoadSeries, name: str, test_days: float, stride_minutes: float, quiet: bool
) -> BacktestResult:
    with tqdm(desc=name, unit="origin", disable=quiet, file=sys.stderr, leave=False) as bar:

        def advance(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        return backtest(
            series,
            MODELS[name](),
            test_seconds=test_days * 86400.0,
            stride_seconds=stride_minutes * 60.0,
            on_origin=advance,
        )


def results_as_json(source: str, series: LoadSeries, results: Sequence[BacktestResult]) -> dict[str, Any]:
    return {
        "trace": source,
        "step_seconds": series.step_seconds,
        "models": {
            result.model: {
                "quantiles": list(result.quantiles),
                "fitted_as": fitted_as(result),
                "leads": [asdict(score) for score in result.scores],
            }
            for result in results
        },
    }


def format_table(source: str, series: LoadSeries, results: Sequence[BacktestResult]) -> str:
    lines = [
        f"{source} (step {series.step_seconds:g} s; lead steps = ceil(lead / step))",
        f"{'model':<22} {'lead':>6} {'steps':>5} {'origins':>7} {'MAE/last':>8} {'pinball':>10} "
        f"{'cover q' + format(max(results[0].quantiles), 'g'):>9} {'under':>6}  fitted as",
    ]
    notes = []
    for result in results:
        fits = fitted_as(result)
        shown = ", ".join(f"{name} {count}/{len(result.fitted_as)}" for name, count in fits.items())
        for score in result.scores:
            lines.append(
                f"{result.model:<22} {score.lead_seconds / 60:>5g}m {score.lead_steps:>5} {score.origins:>7} "
                f"{score.mae_ratio:>8.3f} {score.pinball_rps:>10.4g} {score.coverage:>9.3f} "
                f"{score.under_forecast_rate:>6.3f}  {shown}"
            )
        fell_back = {name: n for name, n in fits.items() if name.startswith(f"{result.model}:")}
        if fell_back and result.model not in DELEGATING_MODELS:
            to = ", ".join(name.split(":", 1)[1] for name in fell_back)
            notes.append(
                f"{result.model}: fell back to {to} in {sum(fell_back.values())} of "
                f"{len(result.fitted_as)} fits (too little history); its rows score {to}"
            )
    return "\n".join(lines + notes)


# Models whose fit picks another model by design: `auto:ewma` is a choice, not a fallback
# (objective_choice without a goal, as in a backtest, keeps its first candidate).
DELEGATING_MODELS = frozenset({"auto", "objective_choice"})


def fitted_as(result: BacktestResult) -> dict[str, int]:
    """How many fits reported each name, in first-seen order (`lightgbm:last_value`: 3)."""
    return dict(Counter(result.fitted_as))

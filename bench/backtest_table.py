"""Backtest every registered model on the multi-day traces and check the selected model.

Run: .venv/bin/python bench/backtest_table.py [--test-days 3] [--stride-minutes 10]
Prints one table per trace (every model vs last value at leads 1, 2, 5, 10, 30 minutes) and the
check the forecasting issue asks for: `auto` beats last value on pinball loss at the 5 and 10
minute leads on at least 4 of the 5 series.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from forecasting import MODELS
from sidecar.backtest_command import format_table, load_series, score_model

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
TRACES = (
    "nasa-http-1995/series_jul.csv",
    "nasa-http-1995/series_aug.csv",
    "alibaba-servegen-llm/series_m-large_10min.csv",
    "alibaba-servegen-llm/series_m-mid_10min.csv",
    "alibaba-servegen-llm/series_m-small_10min.csv",
)
CHECKED_LEADS_SECONDS = (300.0, 600.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--test-days", type=float, default=3.0)
    parser.add_argument("--stride-minutes", type=float, default=10.0)
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"no trace data at {DATA}", file=sys.stderr)
        return 2
    wins = 0
    verdicts = []
    for name in TRACES:
        series = load_series(DATA / name)
        results = [score_model(series, model, args.test_days, args.stride_minutes, True) for model in MODELS]
        print(format_table(name, series, results), "\n", flush=True)
        by_model = {result.model: {s.lead_seconds: s for s in result.scores} for result in results}
        beats = all(
            by_model["auto"][lead].pinball_rps < by_model["last_value"][lead].pinball_rps
            for lead in CHECKED_LEADS_SECONDS
        )
        ratios = [
            by_model["auto"][lead].pinball_rps / by_model["last_value"][lead].pinball_rps
            for lead in CHECKED_LEADS_SECONDS
        ]
        wins += beats
        verdicts.append(
            f"{name:<48} auto/last_value pinball at 5, 10 min: " + ", ".join(f"{r:.3f}" for r in ratios)
        )
    print("\n".join(verdicts))
    summary = f"auto beats last value on pinball at 5 and 10 minutes on {wins} of {len(TRACES)} series"
    print(f"{summary} (target >= 4)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`predictive-autoscaler backtest` end to end on trace files written to a temporary folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sidecar.cli import BUNDLED_TRACE, main


def write_trace(path: Path, days: int = 3, step_seconds: int = 600) -> Path:
    steps = days * 86400 // step_seconds
    counts = 1000 + 800 * np.sin(2 * np.pi * np.arange(steps) * step_seconds / 86400)
    rows = [f"{i * step_seconds},{int(count)}" for i, count in enumerate(counts)]
    path.write_text("timestamp_s,requests\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_json_output_scores_each_model_at_each_lead(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = write_trace(tmp_path / "trace.csv")
    code = main(
        ["backtest", "--trace", str(trace), "--models", "last_value,auto", "--test-days", "1", "--json"]
    )
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert report["step_seconds"] == 600
    assert set(report["models"]) == {"last_value", "auto"}
    leads = report["models"]["auto"]["leads"]
    assert [lead["lead_steps"] for lead in leads] == [1, 1, 1, 1, 3]
    assert all(0 <= lead["coverage"] <= 1 and lead["origins"] > 0 for lead in leads)


def test_table_names_every_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = write_trace(tmp_path / "trace.csv")
    assert main(["backtest", "--trace", str(trace), "--models", "ewma", "--test-days", "1", "--quiet"]) == 0
    table = capsys.readouterr().out
    assert "lead steps = ceil(lead / step)" in table
    assert sum(line.startswith("ewma") for line in table.splitlines()) == 5


def test_the_bundled_trace_is_the_default_and_fallbacks_are_marked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Four days: too little history for LightGBM's training week, so each of its fits is last value.
    assert main(["backtest", "--models", "last_value,lightgbm", "--test-days", "1", "--quiet"]) == 0
    table = capsys.readouterr().out
    assert table.startswith(str(BUNDLED_TRACE))
    rows = [line for line in table.splitlines() if line.startswith("lightgbm ")]
    assert len(rows) == 5 and all(row.endswith("lightgbm:last_value 2/2") for row in rows)
    assert "lightgbm: fell back to last_value in 2 of 2 fits (too little history)" in table
    assert not any(line.startswith("last_value:") for line in table.splitlines())
    assert main(["backtest", "--models", "lightgbm", "--test-days", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["models"]["lightgbm"]["fitted_as"] == {"lightgbm:last_value": 2}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        pytest.param(["--models", "prophet"], "unknown model(s) prophet", id="unknown model"),
        pytest.param(["--test-days", "0"], "--test-days must be in (0, 400]", id="empty test span"),
        pytest.param(["--test-days", "nan"], "--test-days must be in (0, 400]", id="NaN test span"),
        pytest.param(["--stride-minutes", "inf"], "--stride-minutes in (0, 1440]", id="infinite stride"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    trace = write_trace(tmp_path / "trace.csv")
    assert main(["backtest", "--trace", str(trace), *arguments]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("backtest: ") and message in error
    assert len(error.splitlines()) == 1


def test_bad_trace_line_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "bad.csv"
    trace.write_text("timestamp_s,requests\n0,5\n60,many\n", encoding="utf-8")
    assert main(["backtest", "--trace", str(trace)]) == 2
    assert f"{trace}:3:" in capsys.readouterr().err

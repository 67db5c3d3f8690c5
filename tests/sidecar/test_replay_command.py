"""`predictive-autoscaler replay` end to end on tiny temporary traces."""

import json
from pathlib import Path

import pytest

from sidecar.cli import main
from sidecar.replay_command import BUNDLED_TRACE

FAST = "static-peak,oracle"


@pytest.fixture
def trace(tmp_path):
    rows = [f"{60 * i},{(i % 10) * 30 + 20}" for i in range(60)]
    path = tmp_path / "tiny.csv"
    path.write_text("timestamp_s,requests\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_writes_json_timeline_and_plot(trace, tmp_path, capsys):
    out = {name: tmp_path / name for name in ("r.json", "t.csv", "p.png")}
    code = main(
        [
            "replay",
            "--trace",
            str(trace),
            "--policies",
            FAST,
            "--cold-start-seconds",
            "60",
            "--json",
            str(out["r.json"]),
            "--timeline",
            str(out["t.csv"]),
            "--plot",
            str(out["p.png"]),
        ]
    )
    assert code == 0
    figures = json.loads(out["r.json"].read_text())
    assert set(figures["policies"]) == {"static-peak", "oracle"}
    assert figures["parameters"]["cold_start_seconds"] == 60
    # Default capacity: p99 of the per-step rate (290 requests / 60 s) / 20.
    assert figures["parameters"]["replica_capacity_rps"] == pytest.approx(290 / 60 / 20, rel=1e-3)
    assert out["t.csv"].read_text().startswith("t,duration_s,demand_rps,static-peak_ready,")
    assert out["p.png"].read_bytes()[:4] == b"\x89PNG"
    table = capsys.readouterr().out
    assert "| oracle | 0.0000 |" in table


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("timestamp_s,requests\n0,1\n60,-1\n", ":3: requests '-1' is negative", id="negative"),
        pytest.param("", ":1: empty file", id="empty"),
        pytest.param("ts,n\n0,1\n", ":1: header must be", id="wrong columns"),
    ],
)
def test_bad_trace_exits_2_with_one_line(tmp_path, capsys, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text, encoding="utf-8")
    assert main(["replay", "--trace", str(path), "--policies", FAST]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"replay: {path}{message}")
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--trace", "missing.csv"], "replay: missing.csv: cannot read file", id="missing file"),
        pytest.param(["--policies", "magic"], "--policies: unknown ['magic']", id="unknown policy"),
        pytest.param(["--target-utilization", "1.5"], "target_utilization=1.5", id="bad utilization"),
        pytest.param(["--cold-start-seconds", "-1"], "--cold-start-seconds=-1", id="negative cold start"),
        pytest.param(["--replica-capacity", "0"], "replica_capacity_rps=0.0", id="zero capacity"),
        pytest.param(["--replica-capacity", "inf"], "replica_capacity_rps=inf", id="infinite capacity"),
        pytest.param(["--rate-window-seconds", "nan"], "--rate-window-seconds=nan", id="NaN rate window"),
        pytest.param(["--rate-window-seconds", "0"], "--rate-window-seconds=0", id="no rate window"),
        pytest.param(["--scrape-delay-seconds", "-5"], "--scrape-delay-seconds=-5", id="negative delay"),
        pytest.param(["--max-replicas", "3000000000"], "max_replicas=3000000000", id="beyond int32"),
        pytest.param(["--plot", "out.xyz"], "--plot=out.xyz: the file name must end in", id="plot format"),
    ],
)
def test_bad_options_exit_2(trace, capsys, args, message):
    full = ["replay", "--policies", FAST, "--trace", str(trace), *args]
    assert main(full) == 2
    assert message in capsys.readouterr().err


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full")
def test_a_full_disk_names_the_output(trace, capsys):
    assert main(["replay", "--trace", str(trace), "--policies", FAST, "--json", "/dev/full"]) == 2
    assert capsys.readouterr().err.strip() == "replay: /dev/full: cannot write: No space left on device"


def test_unwritable_output_exits_2(trace, tmp_path, capsys):
    target = tmp_path / "no" / "such" / "dir" / "r.json"
    assert main(["replay", "--trace", str(trace), "--policies", FAST, "--json", str(target)]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_default_replays_the_bundled_trace(capsys):
    assert BUNDLED_TRACE.is_file()
    assert main(["replay", "--policies", FAST]) == 0
    assert BUNDLED_TRACE.name in capsys.readouterr().out


def test_forecast_quantile_trades_replica_hours_for_misses(tmp_path):
    # Six hours of noisy per-minute load: a higher forecast quantile provisions more.
    rows = [f"{60 * i},{600 + (i * 7919) % 400}" for i in range(360)]
    trace = tmp_path / "noisy.csv"
    trace.write_text("timestamp_s,requests\n" + "\n".join(rows) + "\n", encoding="utf-8")
    hours = {}
    for quantile in ("0.5", "0.99"):
        out = tmp_path / f"q{quantile}.json"
        args = ["replay", "--trace", str(trace), "--policies", "predictive", "--quiet", "--json", str(out)]
        assert main([*args, "--forecast-model", "ewma", "--forecast-quantile", quantile]) == 0
        hours[quantile] = json.loads(out.read_text())["policies"]["predictive"]["replica_hours"]
    assert hours["0.99"] > hours["0.5"]


def test_unknown_forecast_model_is_a_usage_error(trace, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["replay", "--trace", str(trace), "--forecast-model", "prophet"])
    assert stopped.value.code == 2
    assert "--forecast-model: invalid choice: 'prophet'" in capsys.readouterr().err

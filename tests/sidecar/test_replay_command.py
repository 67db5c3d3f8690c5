"""`predictive-autoscaler replay` end to end on tiny temporary traces."""

import csv
import json
from pathlib import Path

import pytest

from sidecar.cli import BUNDLED_TRACE, main
from sidecar.replay_command import OBJECTIVE_SWEEP
from simulator.frontier import SWEEP_TARGETS

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
        pytest.param(
            ["--cold-start-spread", "nan"], "--cold-start-spread=nan: allowed 0 to 2", id="NaN spread"
        ),
        pytest.param(["--hpa-tolerance", "1"], "--hpa-tolerance=1: allowed 0 up to", id="tolerance 1"),
        pytest.param(
            ["--forecast-quantile", "1"], "--forecast-quantile: Input should be less than 1", id="quantile"
        ),
        pytest.param(
            ["--objective-unserved", "0"],
            "--objective-unserved: Input should be greater than 0",
            id="objective of nothing unserved",
        ),
        pytest.param(
            ["--objective-unserved", "1"],
            "--objective-unserved: Input should be less than 1",
            id="objective 1",
        ),
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


def _noisy_trace(tmp_path):
    """Six hours of per-minute load between 600 and 1,000 requests a minute."""
    rows = [f"{60 * i},{600 + (i * 7919) % 400}" for i in range(360)]
    trace = tmp_path / "noisy.csv"
    trace.write_text("timestamp_s,requests\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return trace


def test_forecast_quantile_trades_replica_hours_for_misses(tmp_path):
    # Six hours of noisy per-minute load: a higher forecast quantile provisions more.
    trace = _noisy_trace(tmp_path)
    hours = {}
    for quantile in ("0.5", "0.99"):
        out = tmp_path / f"q{quantile}.json"
        args = ["replay", "--trace", str(trace), "--policies", "predictive", "--quiet", "--json", str(out)]
        assert main([*args, "--forecast-model", "ewma", "--forecast-quantile", quantile]) == 0
        hours[quantile] = json.loads(out.read_text())["policies"]["predictive"]["replica_hours"]
    assert hours["0.99"] > hours["0.5"]


def test_a_tighter_objective_costs_more_replica_hours_and_the_json_names_it(tmp_path):
    # Six hours of noisy per-minute load: one in a million unserved holds more replicas than a
    # third unserved, and the quantiles are the objective's choice, not fixed.
    trace = _noisy_trace(tmp_path)
    hours = {}
    for objective in ("0.000001", "0.3"):
        out = tmp_path / f"o{objective}.json"
        args = ["replay", "--trace", str(trace), "--policies", "predictive", "--quiet", "--json", str(out)]
        assert main([*args, "--forecast-model", "ewma", "--objective-unserved", objective]) == 0
        document = json.loads(out.read_text())
        assert document["parameters"]["predictive_objective_unserved_share"] == float(objective)
        assert document["parameters"]["predictive_quantiles"] == (
            "pre-warm chosen by the objective, floor chosen by the objective"
        )
        hours[objective] = document["policies"]["predictive"]["replica_hours"]
    assert hours["0.000001"] > hours["0.3"]


def test_the_json_counts_the_decisions_of_each_forecast_models_choice(tmp_path):
    # Six hours: too little for clock_quantiles' days, so it forecasts as recent_quantiles, a
    # tie the default model wins; every decision with a forecast is counted under the choice.
    trace = _noisy_trace(tmp_path)
    out = tmp_path / "choice.json"
    args = ["replay", "--trace", str(trace), "--policies", "predictive", "--quiet", "--json", str(out)]
    assert main([*args, "--forecast-model", "objective_choice"]) == 0
    models = json.loads(out.read_text())["policies"]["predictive"]["forecast_models"]
    assert list(models) == ["objective_choice:recent_quantiles"]
    assert 0 < models["objective_choice:recent_quantiles"] <= 6 * 3600 / 15


def test_unknown_forecast_model_is_a_usage_error(trace, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["replay", "--trace", str(trace), "--forecast-model", "prophet"])
    assert stopped.value.code == 2
    assert "--forecast-model: invalid choice: 'prophet'" in capsys.readouterr().err


def test_the_predictive_timeline_recomputes_the_json_and_the_json_names_the_chain(tmp_path):
    rows = [f"{60 * i},{600 + (i * 7919) % 400}" for i in range(240)]
    trace = tmp_path / "noisy.csv"
    trace.write_text("timestamp_s,requests\n" + "\n".join(rows) + "\n", encoding="utf-8")
    out, timeline = tmp_path / "r.json", tmp_path / "t.csv"
    args = ["replay", "--trace", str(trace), "--policies", "hpa,predictive", "--quiet"]
    assert main([*args, "--json", str(out), "--timeline", str(timeline), "--hpa-tolerance", "0"]) == 0
    figures = json.loads(out.read_text())
    parameters = figures["parameters"]
    assert "ControlLoop -> LatestDecisions" in parameters["predictive_chain"]
    assert "tolerance 0)" in parameters["predictive_chain"]
    assert parameters["cold_start_distribution"].startswith("lognormal per pod: median 120 s")
    assert (parameters["cold_start_seconds"], parameters["cold_start_spread"], parameters["seed"]) == (
        120,
        0.2,
        0,
    )
    capacity = parameters["replica_capacity_rps"]
    with timeline.open() as lines:
        table = list(csv.DictReader(lines))
    for policy in ("hpa", "predictive"):
        demand = sum(float(r["duration_s"]) * float(r["demand_rps"]) for r in table)
        unserved = sum(
            float(r["duration_s"]) * max(0.0, float(r["demand_rps"]) - int(r[f"{policy}_ready"]) * capacity)
            for r in table
        )
        hours = sum(float(r["duration_s"]) * int(r[f"{policy}_provisioned"]) for r in table) / 3600
        assert figures["policies"][policy]["violation_ratio"] == pytest.approx(unserved / demand, rel=1e-12)
        assert figures["policies"][policy]["replica_hours"] == pytest.approx(hours, rel=1e-12)


def test_the_keda_consumer_scales_to_zero_and_the_json_names_its_chain(tmp_path):
    # An hour of load, an idle hour, a busy quarter hour.
    counts = [600] * 60 + [0] * 60 + [600] * 15
    trace = tmp_path / "idle.csv"
    trace.write_text(
        "timestamp_s,requests\n" + "\n".join(f"{60 * i},{c}" for i, c in enumerate(counts)) + "\n",
        encoding="utf-8",
    )
    out, kept = tmp_path / "r.json", tmp_path / "kept.json"
    args = ["replay", "--trace", str(trace), "--policies", "keda,predictive", "--quiet"]
    assert main([*args, "--consumer", "keda", "--min-replicas", "0", "--json", str(out)]) == 0
    assert main([*args, "--json", str(kept)]) == 0
    figures, warm = json.loads(out.read_text()), json.loads(kept.read_text())
    assert (
        "KEDA ScaledObject (deploy/examples/keda: minReplicaCount 0"
        in figures["parameters"]["predictive_chain"]
    )
    assert "-> HPA (External" in warm["parameters"]["predictive_chain"]
    # Both KEDA paths reach zero in the idle hour, and the requests back after it meet a cold
    # workload; with min 1 through the HPA neither happens.
    for name in ("keda", "predictive"):
        assert figures["policies"][name]["cold_demand_share"] > 0, name
        assert warm["policies"][name]["cold_demand_share"] == 0, name
    assert (
        figures["policies"]["predictive"]["replica_hours"] < warm["policies"]["predictive"]["replica_hours"]
    )


def test_an_unknown_consumer_is_a_usage_error(trace, capsys):
    with pytest.raises(SystemExit):
        main(["replay", "--trace", str(trace), "--consumer", "knative"])
    assert "--consumer: invalid choice: 'knative'" in capsys.readouterr().err


def test_sweep_reports_the_frontier_and_the_cost_matched_comparison(tmp_path, capsys):
    rows = [f"{60 * i},{600 + 300 * ((i // 30) % 2) + (i * 7919) % 200}" for i in range(180)]
    trace = tmp_path / "steps.csv"
    trace.write_text("timestamp_s,requests\n" + "\n".join(rows) + "\n", encoding="utf-8")
    out, plot = tmp_path / "r.json", tmp_path / "frontier.png"
    args = ["replay", "--trace", str(trace), "--policies", "hpa,predictive,oracle", "--sweep"]
    assert main([*args, "--json", str(out), "--plot", str(plot)]) == 0
    figures = json.loads(out.read_text())
    assert [p["knob"] for p in figures["frontier"]["hpa"]] == list(SWEEP_TARGETS)
    hours = [p["replica_hours"] for p in figures["frontier"]["hpa"]]
    assert hours == sorted(hours, reverse=True), "a higher target costs fewer replica-hours"
    # The predictive policy's own knob is its objective; its default point is the settings' one.
    assert [p["knob"] for p in figures["frontier"]["predictive"]] == list(OBJECTIVE_SWEEP)
    assert figures["parameters"]["sweep_defaults"] == {"hpa": 0.7, "knative": 0.7, "predictive": 0.001}
    (comparison,) = figures["comparison"]
    assert (comparison["policy"], comparison["baseline"]) == ("predictive", "hpa")
    predictive = figures["policies"]["predictive@0.001"]
    assert comparison["replica_hours"] == predictive["replica_hours"]
    if comparison["violation_inside"]:
        extra = comparison["baseline_hours_at_same_violation"] / comparison["replica_hours"] - 1
        assert comparison["baseline_extra_hours"] == pytest.approx(extra)
    assert plot.read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert "| hpa | 0.55 |" in printed and "hpa hours at same violation" in printed
    # An objective outside the sweep's is swept too, and is the point compared.
    assert main([*args, "--objective-unserved", "0.002", "--json", str(out), "--quiet"]) == 0
    figures = json.loads(out.read_text())
    assert [p["knob"] for p in figures["frontier"]["predictive"]] == sorted((*OBJECTIVE_SWEEP, 0.002))
    (comparison,) = figures["comparison"]
    assert comparison["replica_hours"] == figures["policies"]["predictive@0.002"]["replica_hours"]

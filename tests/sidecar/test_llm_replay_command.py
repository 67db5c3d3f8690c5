"""`replay --trace` on a per-request trace, end to end: the figures in the JSON are the ones the
per-request CSVs give, every request is in them, `--sweep` compares every policy at equal
attainment on its own curve, and bad flags exit 2 with one line."""

import csv
import json

import numpy as np
import pytest

from sidecar.cli import main
from simulator.frontier import FrontierPoint, hours_at_violation
from simulator.llm_replay import KNOBS
from simulator.llm_report import REQUEST_COLUMNS, Slo, score_requests


@pytest.fixture
def trace(tmp_path):
    rng = np.random.default_rng(7)
    # A burst in the middle: 2 req/s, then 25 req/s of long prompts, then 2 req/s again.
    arrivals = np.sort(np.concatenate([rng.uniform(0, 900, 1800), rng.uniform(300, 420, 3000)]))
    rows = [f"{a:.3f},{int(rng.integers(200, 6000))},{int(rng.integers(1, 300))}" for a in arrivals]
    path = tmp_path / "requests.csv"
    path.write_text("arrival_s,input_tokens,output_tokens\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path, len(rows)


def test_json_figures_recompute_from_the_request_csvs(trace, tmp_path, capsys):
    path, count = trace
    out = tmp_path / "out"
    code = main(
        [
            "replay", "--trace", str(path), "--cold-start-seconds", "60", "--slo-ttft-seconds", "1.5",
            "--slo-tpot-seconds", "0.05", "--json", str(tmp_path / "r.json"), "--requests", str(out),
            "--plot", str(tmp_path / "p.png"),
        ]
    )  # fmt: skip
    assert code == 0
    document = json.loads((tmp_path / "r.json").read_text())
    assert set(document["policies"]) == {"hpa", "keda", "kv-cache", "predictive", "oracle"}
    assert (tmp_path / "p.png").stat().st_size > 0
    for name, figures in document["policies"].items():
        with (out / f"{name}.csv").open() as rows:
            reader = csv.reader(rows)
            assert tuple(next(reader)) == REQUEST_COLUMNS
            table = np.array([[float(v) for v in row] for row in reader])
        assert len(table) == count, "every request is in the file"
        assert np.all(np.isfinite(table)), "every request was admitted, answered and finished"
        arrival, _, output, _, admitted, first, finished = table.T
        assert np.all(arrival <= admitted) and np.all(admitted < first) and np.all(first <= finished)
        again = score_requests(arrival, output, first, finished, Slo(1.5, 0.05))
        assert again["attainment"] == pytest.approx(figures["attainment"], abs=1e-9)
        assert again["ttft_p99_s"] == pytest.approx(figures["ttft_p99_s"], abs=1e-5)
        assert again["ttft_p50_s"] == pytest.approx(figures["ttft_p50_s"], abs=1e-5)
    assert "| oracle |" in capsys.readouterr().out


def test_sweep_compares_every_policy_at_equal_attainment(trace, tmp_path, capsys):
    path, _ = trace
    out = tmp_path / "r.json"
    flags = [
        "--cold-start-seconds",
        "60",
        "--sweep",
        "--json",
        str(out),
        "--policies",
        "hpa,kv-cache,predictive",
    ]
    assert main(["replay", "--trace", str(path), *flags]) == 0
    document = json.loads(out.read_text())
    frontier, equal = document["frontier"], document["equal_attainment"]
    assert set(frontier) == {"hpa", "kv-cache", "predictive"}
    for name, points in frontier.items():
        assert [p["knob"] for p in points] == list(KNOBS[name].sweep)
        for point in points:
            figures = document["policies"][f"{name}@{point['knob']:g}"]
            # 1 - (1 - a) is a to the last bit or two.
            assert point["attainment"] == pytest.approx(figures["attainment"], abs=1e-12)
            assert point["gpu_hours"] == figures["gpu_hours"]
    assert document["parameters"]["predictive_chain"].startswith("ControlLoop -> LatestDecisions")
    assert 0 < equal[0]["attainment"] <= 0.99
    for level in equal:
        attainment = level["attainment"]
        for name, points in frontier.items():
            curve = [FrontierPoint(name, p["knob"], 1 - p["attainment"], p["gpu_hours"]) for p in points]
            figures = level["policies"][name]
            assert figures["gpu_hours_at_attainment"] == hours_at_violation(curve, 1 - attainment)
            assert figures["best_attainment"] == pytest.approx(max(p["attainment"] for p in points))
            meeting = [p["gpu_hours"] for p in points if p["attainment"] >= attainment - 1e-12]
            assert figures["cheapest_meeting_gpu_hours"] == (min(meeting) if meeting else None)
        priced = {
            name: f["gpu_hours_at_attainment"]
            if f["gpu_hours_at_attainment"] is not None
            else f["cheapest_meeting_gpu_hours"]
            for name, f in level["policies"].items()
        }
        baselines = {n: h for n, h in priced.items() if n != "predictive" and h is not None}
        if baselines and priced["predictive"] is not None:
            best = min(baselines, key=baselines.__getitem__)
            assert level["best_baseline"] == best
            assert level["saving_vs_best_baseline"] == pytest.approx(
                1 - priced["predictive"] / baselines[best]
            )
    if len(equal) == 2:  # the highest attainment both reach, below the target
        below = equal[1]
        reached = [below["policies"][n]["best_attainment"] for n in ("hpa", "kv-cache")]
        assert below["attainment"] == pytest.approx(
            min(equal[0]["attainment"], below["policies"]["predictive"]["best_attainment"], max(reached))
        )
        assert below["saving_vs_best_baseline"] is not None
    assert "At equal attainment" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--policies", "knative"], "not available for a per-request trace"),
        (["--slo-ttft-seconds", "0"], "--slo-ttft-seconds=0: must be"),
        (["--slo-tpot-seconds", "nan"], "--slo-tpot-seconds=nan: must be"),
        (["--min-replicas", "0"], "need 1 <= min <= max"),
    ],
)
def test_bad_flags_exit_2_with_one_line(trace, flags, message, capsys):
    path, _ = trace
    assert main(["replay", "--trace", str(path), *flags]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1


def test_a_bad_row_is_named(tmp_path, capsys):
    path = tmp_path / "bad.csv"
    path.write_text("arrival_s,input_tokens,output_tokens\n1,2,3\n2,x,3\n", encoding="utf-8")
    assert main(["replay", "--trace", str(path)]) == 2
    assert capsys.readouterr().err == f"replay: {path}:3: input_tokens 'x' is not a whole number\n"

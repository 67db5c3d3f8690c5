"""Scores, and the files that show them: the timeline recomputes the JSON figures exactly."""

import csv
import json
from dataclasses import replace

import numpy as np
import pytest

from simulator.metrics_pipeline import TraceMetrics
from simulator.policies import Oracle, StaticPeak
from simulator.replay import Occupancy, ReplaySettings, replay
from simulator.report import (
    comparison_table,
    policy_colour,
    score,
    write_json,
    write_plot,
    write_timeline,
)
from tests.simulator.test_replay import Scripted

SETTINGS = ReplaySettings(replica_capacity_rps=8.0, target_utilization=0.5, cold_start_seconds=30)


@pytest.mark.parametrize(
    ("demand", "ready", "provisioned", "violation", "events", "under", "cold"),
    [
        pytest.param(
            [10, 10], [1, 1], [1, 1], 0.2, 0, 2, 0.0, id="10 rps on one 8 rps replica misses a fifth"
        ),
        pytest.param(
            [4, 4, 4], [1, 1, 1], [1, 2, 1], 0.0, 2, 0, 0.0, id="starting replica costs but does not serve"
        ),
        pytest.param([0, 0], [0, 0], [1, 1], 0.0, 0, 0, 0.0, id="no demand no violation"),
        pytest.param(
            [1, 3, 0, 4],
            [0, 0, 1, 1],
            [0, 1, 1, 1],
            0.5,
            1,
            2,
            0.5,
            id="demand at zero ready met a cold replica",
        ),
    ],
)
def test_score(demand, ready, provisioned, violation, events, under, cold):
    occupancy = Occupancy("p", np.asarray(ready), np.asarray(provisioned))
    figures = score(np.asarray(demand, dtype=float), occupancy, 8.0)
    assert figures.cold_demand_share == pytest.approx(cold)
    assert figures.violation_ratio == pytest.approx(violation)
    assert figures.replica_hours == pytest.approx(sum(provisioned) / 3600)
    assert (figures.scale_events, figures.underprovisioned_seconds) == (events, under)


def test_cost_figures_count_gpus_idle_capacity_and_price():
    # 4 rps for 2 s; 1 then 2 replicas of 8 rps provisioned, 1 ready; 2 GPUs each at 3.6 an hour.
    occupancy = Occupancy("p", np.asarray([1, 1]), np.asarray([1, 2]))
    figures = score(np.asarray([4.0, 4.0]), occupancy, 8.0, gpus_per_replica=2.0, price_per_gpu_hour=3.6)
    assert figures.gpu_hours == pytest.approx(6 / 3600)
    # 24 requests of capacity provisioned (3 replica-seconds x 8), 8 served.
    assert figures.idle_share == pytest.approx(2 / 3)
    # 6 GPU-seconds at 0.001 a GPU-second = 0.006 for 8 requests: 0.75 per 1,000.
    assert figures.cost_per_1k_requests == pytest.approx(0.75)
    assert score(np.asarray([4.0, 4.0]), occupancy, 8.0).cost_per_1k_requests is None


@pytest.fixture
def run():
    rng = np.random.default_rng(3)
    demand = np.repeat(rng.uniform(0, 40, size=40), 15)
    demand[200:260] = np.nan  # a gap
    policies = [Scripted({0: 2, 100: 6, 300: 1, 450: 9}), StaticPeak(), Oracle()]
    return replay("synthetic.csv", demand, 0.0, TraceMetrics(demand, 0.0), SETTINGS, policies)


def test_timeline_recomputes_the_json_figures(run, tmp_path):
    write_json(run, tmp_path / "r.json")
    rows = write_timeline(run, tmp_path / "t.csv")
    figures = json.loads((tmp_path / "r.json").read_text())
    with (tmp_path / "t.csv").open() as lines:
        table = list(csv.DictReader(lines))
    assert len(table) == rows < len(run.demand_rps)
    duration = np.array([float(r["duration_s"]) for r in table])
    demand = np.array([float(r["demand_rps"]) for r in table])
    assert duration.sum() == len(run.demand_rps) == figures["parameters"]["simulated_seconds"]
    capacity = figures["parameters"]["replica_capacity_rps"]
    for name, expected in figures["policies"].items():
        ready = np.array([int(r[f"{name}_ready"]) for r in table])
        provisioned = np.array([int(r[f"{name}_provisioned"]) for r in table])
        shortfall = duration * np.maximum(0.0, demand - ready * capacity)
        assert shortfall.sum() / (duration * demand).sum() == pytest.approx(
            expected["violation_ratio"], rel=1e-12
        )
        assert (duration * provisioned).sum() / 3600 == pytest.approx(expected["replica_hours"], rel=1e-12)
        assert expected["gpu_hours"] == pytest.approx(expected["replica_hours"] * SETTINGS.gpus_per_replica)
        assert int(((shortfall > 0) * duration).sum()) == expected["underprovisioned_seconds"]
        cold = (duration * demand * (ready == 0)).sum() / (duration * demand).sum()
        assert cold == pytest.approx(expected["cold_demand_share"], rel=1e-12)
    assert figures["policies"]["oracle"]["violation_ratio"] == 0.0
    assert figures["policies"]["scripted"]["violation_ratio"] > 0.0


def test_table_has_one_row_per_policy_relative_to_oracle(run):
    lines = comparison_table(run).splitlines()
    assert [line.split("|")[1].strip() for line in lines[2:]] == ["scripted", "static-peak", "oracle"]
    assert lines[0].endswith("| gpu_hours | idle_share | cost_per_1k |")
    # No price given: no money figure, but the GPU-hours (one GPU a replica) and idle share show.
    assert all(line.endswith("| - |") for line in lines[2:])
    assert "| 1.00x |" in lines[-1]


def test_plot_is_a_png(run, tmp_path):
    path = tmp_path / "p.png"
    write_plot(run, path, max_points=100)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 5000


def test_each_policy_keeps_its_colour_whatever_the_order(run, tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    seen = []
    original = plt.Figure.savefig

    def capture(figure, *args, **kwargs):
        panels = figure.axes[:-1]
        seen.append({axes.get_title(loc="left"): axes.lines[1].get_color() for axes in panels})
        return original(figure, *args, **kwargs)

    reordered = replace(run, occupancies=tuple(reversed(run.occupancies)))
    monkeypatch.setattr(plt.Figure, "savefig", capture)
    write_plot(run, tmp_path / "a.png", max_points=100)
    write_plot(reordered, tmp_path / "b.png", max_points=100)
    assert seen[0] == seen[1]
    assert seen[0]["oracle"] == policy_colour("oracle") != seen[0]["static-peak"]
    assert len(seen[0]) == len(run.occupancies), "one panel per policy"

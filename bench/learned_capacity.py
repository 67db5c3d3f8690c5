"""Capacity learned online, on the predictive LLM replay: the shipped control loop over the
continuous-batching serving cluster (sidecar/replay_simulation.ServingControlLoopPolicy), given
the serving profile's flat-out capacity for the trace's token mix, given the capacity measured
as sustainable on the same serving model, and started with none, so that it learns one from
(load per ready replica, queue per ready replica) pairs.

The sustainable capacity is measured first: a fixed fleet of 4 replicas under steady Poisson
arrivals with the trace's token mix, at shares of the profile's capacity, an hour each; the load
per replica at which the waiting requests per replica (over the second half-hour) cross the
queue target the loop scales on (5) is what one replica sustains before its queue grows.
Then: the learned capacity over the trace against both, when it first came within 15 % of each
and stayed there, and the runs' TTFT attainment (TTFT <= 2 s) and GPU-hours.

    .venv/bin/python bench/learned_capacity.py ../shared/data [--days 1] [--scale 0.002]
        [--load tokens|requests] [--cold-start-seconds 120]

The trace is the ServeGen m-large synthesis (its first `--days`, token pairs from Mooncake), as
bench/llm_replay_table.py builds it.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from sidecar.core import load_core
from sidecar.replay_simulation import ServingControlLoopPolicy, Simulation
from simulator.llm_policies import KEDA_QUEUE_THRESHOLD
from simulator.llm_replay import LlmReplaySettings, load_capacity, run_policies
from simulator.llm_report import Slo, score_requests
from simulator.llm_signals import LlmSignals
from simulator.metrics_pipeline import TraceMetrics
from simulator.request_trace import RequestTrace, read_request_trace
from simulator.servegen_synthesis import synthesized_trace
from simulator.serving import ServingCluster, ServingSettings, serve
from simulator.serving_profile import ServingProfile, load_profile

TOLERANCE = 0.15


@dataclass
class Recording:
    """A predictive policy that keeps the simulation its drive() returns."""

    policy: ServingControlLoopPolicy
    simulation: Simulation | None = None

    @property
    def name(self) -> str:
        return self.policy.name

    def drive(self, cluster: ServingCluster, settings: LlmReplaySettings) -> Simulation:
        self.simulation = self.policy.drive(cluster, settings)
        return self.simulation


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data", type=Path)
    parser.add_argument("--days", type=float, default=1.0)
    parser.add_argument("--scale", type=float, default=0.002)
    parser.add_argument("--load", choices=("tokens", "requests"), default="tokens")
    parser.add_argument("--cold-start-seconds", type=float, default=120.0)
    parser.add_argument("--max-replicas", type=int, default=64)
    args = parser.parse_args()

    profile = load_profile()
    mooncake = read_request_trace(args.data / "mooncake-kimi-conversation" / "conversation_trace.jsonl")
    archive = args.data / "alibaba-servegen-llm" / "servegen_traces.tar.gz"
    trace = synthesized_trace(archive, "m-large", mooncake, "Mooncake", args.scale, args.days)
    name = trace.source
    settings = LlmReplaySettings(cold_start_seconds=args.cold_start_seconds, max_replicas=args.max_replicas)
    slo = Slo()
    core = load_core()
    true = load_capacity(trace, profile, args.load)
    unit = "tokens/s" if args.load == "tokens" else "requests/s"
    print(f"{name}: {len(trace)} requests, {profile.name}, cold start {args.cold_start_seconds:g} s")
    print(f"true capacity (profile, the trace's mean token mix): {_rate(true)} {unit} per replica")

    sustainable = _saturation(trace, profile, args.load)
    crossing = f"waiting per replica crosses {KEDA_QUEUE_THRESHOLD:g}"
    print(f"measured sustainable ({crossing}): {_rate(sustainable)} {unit} per replica")

    rows = []
    learned_points: list[tuple[float, float]] = []
    runs = (
        ("given the profile's capacity", None, False),
        ("given the measured sustainable capacity", sustainable, False),
        ("capacity learned online", None, True),
    )
    for label, capacity, learn in runs:
        base = ServingControlLoopPolicy(core, settings.target_utilization, load=args.load)
        recording = Recording(replace(base, name=label, capacity=capacity, learn_capacity=learn))
        began = time.perf_counter()
        (run,) = run_policies(
            trace, profile, ["predictive"], settings, slo, predictive=lambda _k, _n, r=recording: r
        )
        wall = time.perf_counter() - began
        score = score_requests(trace.arrival_s, trace.output_tokens, run.first_token_s, run.finished_s, slo)
        assert recording.simulation is not None
        if learn:
            learned_points = recording.simulation.learned_capacity
        reasons: dict[str, int] = {}
        for _, _, reason in recording.simulation.decisions:
            reasons[reason] = reasons.get(reason, 0) + 1
        rows.append((label, score["attainment"], run.gpu_hours, wall, reasons))

    print()
    print("| hours into the trace | learned capacity | / profile's | / measured sustainable |")
    print("|---|---|---|---|")
    for hours in (1, 2, 3, 6, 12, 18, 24, 48, 72):
        if hours * 3600 > trace.duration_seconds:
            break
        value = _at(learned_points, hours * 3600.0)
        shown = "none yet" if value is None else f"{_rate(value)} {unit}"
        ratio = "| |" if value is None else f"| {value / true:.3f} | {value / sustainable:.3f} |"
        print(f"| {hours} | {shown} {ratio}")
    final = learned_points[-1][1] if learned_points else None
    if final is not None:
        hours = trace.duration_seconds / 3600
        ratios = f"{final / true:.3f} | {final / sustainable:.3f}"
        print(f"| end ({hours:.1f} h) | {_rate(final)} {unit} | {ratios} |")
    first = learned_points[0][0] / 3600 if learned_points else None
    print()
    print(f"first estimate at {first:.2f} h" if first is not None else "no estimate")
    for what, value in (("the profile's capacity", true), ("the measured sustainable capacity", sustainable)):
        settled = _settled_within(learned_points, value, TOLERANCE)
        print(
            f"within {TOLERANCE:.0%} of {what} from {settled / 3600:.2f} h on"
            if settled is not None
            else f"not within {TOLERANCE:.0%} of {what} for good"
        )
    print()
    print("| run | TTFT attainment | GPU-hours | wall s | decision reasons |")
    print("|---|---|---|---|---|")
    for label, attainment, gpu_hours, wall, reasons in rows:
        top = ", ".join(f"{r} {n}" for r, n in sorted(reasons.items(), key=lambda kv: -kv[1])[:4])
        print(f"| {label} | {attainment:.4f} | {gpu_hours:.1f} | {wall:.0f} | {top} |")
    print()
    for label, attainment, *_ in rows[:2]:
        print(f"attainment, learned minus {label}: {(rows[2][1] - attainment) * 100:+.2f} points")


@dataclass
class FixedFleet:
    replicas: int
    name: str = "fixed"
    tick_seconds: float = 15.0

    def step(self, view: object) -> int:
        return self.replicas


def _saturation(trace: RequestTrace, profile: ServingProfile, load: str) -> float:
    """Waiting requests per replica on a fixed fleet under steady load at shares of the profile's
    capacity (the token pairs resampled from the trace, arrivals Poisson); returns the load per
    replica at which it crosses the queue target the loop scales on."""
    fleet, hour = 4, 3600.0
    true = load_capacity(trace, profile, load)
    per_request = float(np.mean(trace.input_tokens + trace.output_tokens)) if load == "tokens" else 1.0
    print()
    print(f"| share of the profile's capacity | {load}/s per replica | waiting per replica, 2nd half-hour |")
    print("|---|---|---|")
    shares = (0.7, 0.8, 0.825, 0.85, 0.875, 0.9, 0.95, 1.0)
    measured = []
    for share in shares:
        rng = np.random.default_rng(0)
        rate = fleet * share * true / per_request  # requests per second for the fleet
        arrivals = np.cumsum(rng.exponential(1 / rate, int(rate * hour * 1.2)))
        arrivals = arrivals[arrivals < hour]
        pick = rng.integers(0, len(trace), len(arrivals))
        steady = RequestTrace("steady", 0.0, arrivals, trace.input_tokens[pick], trace.output_tokens[pick])
        signals = LlmSignals()
        serve(
            FixedFleet(fleet),
            steady,
            profile,
            ServingSettings(fleet, fleet, initial_replicas=fleet),
            lambda: 0.0,
            TraceMetrics(steady.arrivals_per_second(), 0.0),
            signals,
        )
        waiting = [signals.num_requests_waiting(t, 0.0) or 0.0 for t in np.arange(hour / 2, hour, 15.0)]
        measured.append(float(np.mean(waiting)) / fleet)
        print(f"| {share:.3f} | {_rate(share * true)} | {measured[-1]:.2f} |")
    print()
    # Where waiting per replica crosses the queue target, linear between the two shares around it.
    return true * float(np.interp(KEDA_QUEUE_THRESHOLD, measured, shares))


def _rate(value: float) -> str:
    """Tokens per second to a tenth, requests per second to four significant digits."""
    return f"{value:,.1f}" if value >= 100 else f"{value:.4g}"


def _at(points: list[tuple[float, float]], at: float) -> float | None:
    times = np.array([t for t, _ in points])
    index = int(np.searchsorted(times, at, side="right")) - 1
    return None if index < 0 else points[index][1]


def _settled_within(points: list[tuple[float, float]], true: float, tolerance: float) -> float | None:
    """The first time from which every estimate stays within `tolerance` of `true`."""
    settled = None
    for at, value in points:
        within = abs(value / true - 1) <= tolerance
        settled = (settled if settled is not None else at) if within else None
    return settled


if __name__ == "__main__":
    main()

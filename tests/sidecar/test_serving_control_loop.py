"""The predictive policy on a per-request trace is the shipped control loop over the serving
cluster: its decisions reach the vLLM replicas only through the example HPA, it reads the load
and the queue as a Prometheus scraping vLLM would show them (no look-ahead), learns the cold start
from pods turning Ready, and no request is served before its replica is Ready or lost.

The Kubernetes API cannot run here; the serving cluster stands in for it at the loop's own ports
(ReplicaReader, ColdStartSource), the boundary a cluster's adapters implement.
"""

import numpy as np
import pytest

from sidecar.core import load_core
from sidecar.replay_simulation import LoopOptions, ServingControlLoopPolicy
from sidecar.settings import ObjectiveSettings
from simulator.llm_replay import LlmReplaySettings, default_sweep, load_capacity, run_policies
from simulator.llm_report import Slo
from simulator.llm_signals import LlmSignals
from simulator.request_trace import RequestTrace
from simulator.serving import ServingCluster, ServingSettings
from simulator.serving_profile import load_profile

CORE = load_core()
PROFILE = load_profile()
SETTINGS = LlmReplaySettings(cold_start_seconds=60.0, max_replicas=40)


def burst_trace(seed: int = 3, minutes: int = 40) -> RequestTrace:
    """2 req/s of 1-4k-token prompts, with 30 req/s for ten minutes in the middle."""
    rng = np.random.default_rng(seed)
    span = 60.0 * minutes
    base = rng.uniform(0, span, int(2 * span))
    burst = rng.uniform(span / 2 - 300, span / 2 + 300, 30 * 600)
    arrivals = np.sort(np.concatenate([base, burst]))
    inputs = rng.integers(1000, 4000, arrivals.size)
    outputs = rng.integers(20, 400, arrivals.size)
    return RequestTrace("burst", 1_700_000_000.0, arrivals, inputs, outputs)


DEFAULT_SLO = Slo()
DEFAULT_OPTIONS = LoopOptions()


def drive(
    trace: RequestTrace,
    load: str = "tokens",
    capacity: float | None = None,
    slo: Slo = DEFAULT_SLO,
    options: LoopOptions = DEFAULT_OPTIONS,
):
    draws = SETTINGS.cold_starts.draws()
    cluster = ServingCluster(trace, PROFILE, ServingSettings(1, 40), lambda: float(next(draws)), LlmSignals())
    policy = ServingControlLoopPolicy(CORE, 0.6, load, options, name="predictive", capacity=capacity, slo=slo)
    simulation = policy.drive(cluster, SETTINGS)
    return simulation, cluster.finish("predictive")


@pytest.mark.parametrize("load", ["tokens", "requests"])
def test_the_loop_scales_the_serving_cluster_through_the_hpa(load):
    trace = burst_trace()
    simulation, run = drive(trace, load)
    assert len(simulation.decisions) == trace.duration_seconds // 15
    assert run.tick_provisioned.max() > 3, "the burst was scaled for"
    assert run.tick_provisioned[-1] < run.tick_provisioned.max(), "and scaled down after"
    # Every request finished, on a replica that was Ready when it was admitted.
    assert np.all(np.isfinite(run.finished_s)) and np.all(run.replica >= 0)
    assert np.all(run.admitted_s >= run.ready_at[run.replica])
    assert np.all(run.admitted_s >= trace.arrival_s)
    # The loop learned the cold start from the pods it saw become Ready, not the default.
    samples = simulation.tracker.samples_seconds()[("replay", "predictive")]
    assert len(samples) >= 3
    assert 40 < simulation.tracker.cold_start_seconds("replay", "predictive") < 100
    # The HPA between the loop and the Deployment: its spec changes only at its syncs, to
    # what the loop published at that tick (tolerance 0.1 may hold a change).
    published = {at - trace.start_seconds: replicas for at, replicas, _ in simulation.decisions}
    changes = np.flatnonzero(np.diff(run.tick_provisioned)) + 1
    assert all(run.tick_provisioned[i] == published[run.tick_at[i]] for i in changes)


def test_the_workloads_ttft_slo_moves_its_objective_through_the_ttft_histogram():
    # The burst's queues put first tokens past 2 s but never past 600 s: the same trace and
    # capacity, the TTFT histogram the only difference the loop can see between the two runs.
    # Half the demand may go unserved, so that the burst's load above capacity alone (which
    # takes the level to the top at the default 0.001) leaves the level to the TTFT. An hour, so
    # that the forecast has seen most of its hour when the level moves its quantiles after the
    # burst (over 30 minutes its trust stays under a half, and with it the quantiles' weight).
    trace = burst_trace(minutes=60)
    capacity = load_capacity(trace, PROFILE, "tokens")
    options = LoopOptions(objective=ObjectiveSettings(unserved_share=0.5))
    _, tight = drive(trace, capacity=capacity, slo=Slo(2.0), options=options)
    _, loose = drive(trace, capacity=capacity, slo=Slo(600.0), options=options)
    assert tight.gpu_hours > loose.gpu_hours * 1.05


def test_the_loop_does_not_look_ahead():
    trace = burst_trace(minutes=30)
    cut = 20 * 60.0
    # The future changed: 20 more requests per second of long prompts after the cut.
    rng = np.random.default_rng(9)
    extra = rng.uniform(cut, trace.arrival_s[-1], int(20 * (trace.arrival_s[-1] - cut)))
    arrivals = np.concatenate([trace.arrival_s, extra])
    order = np.argsort(arrivals, kind="stable")
    changed = RequestTrace(
        trace.source,
        trace.start_seconds,
        arrivals[order],
        np.concatenate([trace.input_tokens, rng.integers(4000, 8000, extra.size)])[order],
        np.concatenate([trace.output_tokens, rng.integers(20, 400, extra.size)])[order],
    )
    # A replica's capacity is a setting, the one the replay derives from the whole trace's token
    # mix (as every policy's is): held equal, so that only what the loop reads can differ.
    capacity = load_capacity(trace, PROFILE, "tokens")
    before, _ = drive(trace, capacity=capacity)
    after, _ = drive(changed, capacity=capacity)
    # A tick at t reads what was scraped by t - 15 s: the decisions agree until the cut.
    until = trace.start_seconds + cut
    assert [d for d in before.decisions if d[0] <= until] == [d for d in after.decisions if d[0] <= until]
    assert before.decisions != after.decisions


def test_run_policies_runs_the_predictive_policy_at_each_knob():
    # 40 minutes: on 20, every knob met the burst at max_replicas, and what each spent was decided
    # by when its replicas came back inside HPA's scale-down window after it, not by the knob.
    trace = burst_trace(minutes=40)

    def factory(knob, name):
        return ServingControlLoopPolicy(CORE, knob, name=name)

    runs = run_policies(trace, PROFILE, ["predictive"], SETTINGS, Slo(), factory, default_sweep())
    assert [r.name for r in runs] == [
        "predictive@0.3",
        "predictive@0.4",
        "predictive@0.5",
        "predictive@0.6",
        "predictive@0.7",
    ]
    hours = [r.gpu_hours for r in runs]
    assert hours[0] > hours[-1], "a lower target utilization buys more GPU-hours"


def ramp_trace(seed: int = 1, low: float = 1.0, high: float = 20.0, span: float = 3600.0) -> RequestTrace:
    """Poisson arrivals whose rate rises linearly from `low` to `high` req/s (1-4k-token prompts)."""
    rng = np.random.default_rng(seed)
    count = int((low + high) / 2 * span)
    share = np.sort(rng.uniform(0, 1, count))  # the inverse of the linear intensity's CDF
    arrivals = span * (np.sqrt(low * low + (high * high - low * low) * share) - low) / (high - low)
    return RequestTrace(
        "ramp", 1_700_000_000.0, arrivals, rng.integers(1000, 4000, count), rng.integers(20, 400, count)
    )


def test_without_a_capacity_the_loop_learns_one_from_the_queue_and_then_uses_it():
    # A load rising past what the first replicas sustain: the queue grows at each step up.
    trace = ramp_trace()
    draws = SETTINGS.cold_starts.draws()
    cluster = ServingCluster(trace, PROFILE, ServingSettings(1, 40), lambda: float(next(draws)), LlmSignals())
    policy = ServingControlLoopPolicy(CORE, 0.6, "tokens", name="learned", learn_capacity=True)
    simulation = policy.drive(cluster, SETTINGS)
    assert simulation.learned_capacity, "the queue taught a capacity"
    first = simulation.learned_capacity[0][0]
    reasons_before = {reason for at, _, reason in simulation.decisions if at < first}
    reasons_after = {reason for at, _, reason in simulation.decisions if at >= first}
    # Until learned, the load and the forecast ask nothing: only the queue (or holding) decides.
    assert not reasons_before & {"load", "forecast", "load_learned_capacity", "forecast_learned_capacity"}
    assert reasons_after & {"load_learned_capacity", "forecast_learned_capacity"}
    assert not reasons_after & {"load", "forecast"}, "a learned capacity always says so"
    # A replica's queue grows before it reaches the profile's flat-out figure for this token mix
    # (a full batch of 256), and not far before it: the estimate lies in between (one 2 % bin).
    flat_out = load_capacity(trace, PROFILE, "tokens")
    assert 0.75 * flat_out < simulation.learned_capacity[-1][1] <= 1.02 * flat_out

"""The LLM serving cluster: continuous batching times, admission limits, readiness, draining, no
lost requests, the vLLM signals it scrapes, and the default profile file."""

from dataclasses import replace

import numpy as np
import pytest

from autoscaler.latency_misses import share_over
from simulator.llm_policies import KedaQueueAutoscaler, OracleSchedule, window_means
from simulator.llm_signals import LlmSignals
from simulator.metrics_pipeline import TraceMetrics
from simulator.request_trace import RequestTrace
from simulator.serving import ServingSettings, serve
from simulator.serving_profile import ProfileError, ServingProfile, load_profile
from simulator.signal_sources import LlmTtftBuckets

PROFILE = ServingProfile(
    name="test",
    gpus_per_replica=2,
    kv_cache_tokens=10_000,
    max_num_seqs=4,
    max_num_batched_tokens=512,
    prefill_tokens_per_second=1000.0,
    decode_base_seconds=0.01,
    decode_per_sequence_seconds=0.001,
    decode_per_kv_token_seconds=0.0,
)


class Scripted:
    """Asks for `plan[k]` replicas at its k-th tick (the last entry after that)."""

    def __init__(self, plan, tick_seconds=10.0):
        self.name = "scripted"
        self.tick_seconds = tick_seconds
        self.plan = plan
        self.ticks = 0

    def step(self, view):
        wanted = self.plan[min(self.ticks, len(self.plan) - 1)]
        self.ticks += 1
        return wanted


def trace_of(arrivals, inputs, outputs):
    return RequestTrace(
        "t", 0.0, np.asarray(arrivals, float), np.asarray(inputs, np.int64), np.asarray(outputs, np.int64)
    )


def run(trace, policy, profile=PROFILE, cold_start=lambda: 30.0, initial=1, signals=None, **settings):
    metrics = TraceMetrics(trace.arrivals_per_second(), trace.start_seconds)
    config = ServingSettings(initial_replicas=initial, **settings)
    return serve(policy, trace, profile, config, cold_start, metrics, signals)


def test_one_request_prefills_in_chunks_then_decodes_alone():
    # 1,000 prompt tokens, 512 per step: each step costs the base step (0.01 s) + 512/1000 s, so
    # the prefill rate is 512 / 0.522 tokens/s; then 9 decode steps of 0.01 + 0.001 s.
    outcome = run(trace_of([0.5], [1000], [10]), Scripted([1]))
    prefill = 1000 / (512 / (0.01 + 0.512))
    assert outcome.admitted_s[0] == 0.5
    assert outcome.first_token_s[0] == pytest.approx(0.5 + prefill)
    assert outcome.finished_s[0] == pytest.approx(0.5 + prefill + 9 * 0.011)


def test_decode_steps_slow_down_with_the_batch():
    alone = run(trace_of([0.0], [10], [101]), Scripted([1]))
    crowd = run(trace_of([0.0] * 4, [10] * 4, [101] * 4), Scripted([1]))
    decode_alone = alone.finished_s[0] - alone.first_token_s[0]
    decode_crowd = crowd.finished_s[-1] - crowd.first_token_s[-1]
    assert decode_alone == pytest.approx(100 * 0.011)
    assert decode_crowd > decode_alone


def test_max_num_seqs_and_kv_capacity_hold_requests_in_the_queue():
    seats = run(trace_of([0.0] * 5, [10] * 5, [50] * 5), Scripted([1]))
    assert np.all(seats.admitted_s[:4] == 0.0)
    assert seats.admitted_s[4] == pytest.approx(np.min(seats.finished_s[:4]))
    # Two requests of 6,000 tokens each do not fit in a 10,000-token cache together.
    cache = run(trace_of([0.0, 0.0], [5000, 5000], [1000, 1000]), Scripted([1]))
    assert cache.admitted_s[1] == pytest.approx(cache.finished_s[0])


def test_no_request_before_ready_none_lost_and_removed_replicas_drain():
    rng = np.random.default_rng(3)
    arrivals = np.sort(rng.uniform(0, 300, 600))
    trace = trace_of(arrivals, rng.integers(50, 3000, 600), rng.integers(2, 400, 600))
    draws = iter(np.linspace(20, 90, 100))
    # Scale 1 -> 6 -> 2 -> 5 -> 1 while the load runs.
    outcome = run(
        trace, Scripted([1] * 3 + [6] * 8 + [2] * 6 + [5] * 5 + [1]), cold_start=lambda: next(draws)
    )
    assert np.all(np.isfinite(outcome.finished_s))
    assert np.all(outcome.replica >= 0)
    served_by = outcome.replica
    ready = outcome.ready_at[served_by]
    assert np.all(outcome.admitted_s >= ready)
    assert np.all(outcome.admitted_s >= trace.arrival_s)
    assert np.all(outcome.first_token_s > outcome.admitted_s)
    assert np.all(outcome.finished_s >= outcome.first_token_s)
    assert outcome.drained, "scale-downs of ready replicas must be reported as drains"
    assert outcome.scale_events == 4
    # A replica is billed from creation: at least the initial one for the whole span, in GPUs.
    assert outcome.gpu_hours >= 2 * trace.duration_seconds / 3600


def test_requests_wait_at_the_gateway_while_no_replica_is_ready():
    outcome = run(trace_of([1.0, 2.0], [10, 10], [5, 5]), Scripted([1]), initial=0, cold_start=lambda: 40.0)
    assert np.all(outcome.admitted_s >= 40.0)
    assert np.all(outcome.ready_at[outcome.replica] <= outcome.admitted_s)


def test_signals_respect_the_scrape_delay_and_report_the_queue():
    signals = LlmSignals()
    trace = trace_of(np.linspace(0, 60, 300), [4000] * 300, [20] * 300)
    outcome = run(trace, Scripted([1]), signals=signals)
    assert signals.num_requests_waiting(10.0, delay=15.0) is None
    assert signals.request_rate(30.0, 60.0, 0.0) == pytest.approx(300 / 60, rel=0.1)
    waiting = signals.num_requests_waiting(40.0, 0.0)
    assert waiting is not None and waiting > 5  # 5 req/s of 4 s prefill work each on one replica
    assert signals.num_requests_running(40.0, 0.0) >= 1
    prompt_rate = signals.prompt_tokens_rate(40.0, 30.0, 0.0)
    assert prompt_rate == pytest.approx(PROFILE.max_num_batched_tokens / (0.01 + 0.512 + 0.001), rel=0.05)
    p99 = signals.ttft_quantile(60.0, 30.0, 0.0)
    assert p99 is not None and p99 > 10
    assert signals.value("ttft_p99", 60.0, 30.0, 0.0) == p99
    # The buckets the p99 was read from: the share over it is the 1 % it leaves above.
    buckets = LlmTtftBuckets(signals, 0.0, 30.0).histogram(60.0)
    assert buckets is not None and buckets.observed_at == 60.0
    assert share_over(buckets, p99) == pytest.approx(0.01)
    first = outcome.first_token_s
    assert buckets.counts[-1] * 30.0 == pytest.approx(np.sum((first > 30.0) & (first <= 60.0)))
    assert LlmTtftBuckets(signals, 15.0, 30.0).histogram(10.0) is None, "nothing scraped by then"
    history = signals.history("requests_total", 0.0, 60.0, 10.0)
    assert history is not None and np.nansum(history.values) * 10 == pytest.approx(300, abs=10)


def test_keda_scales_out_on_the_queue():
    trace = trace_of(np.linspace(0, 600, 3000), [4000] * 3000, [20] * 3000)
    outcome = run(trace, KedaQueueAutoscaler(1, 20, 15.0))
    assert outcome.tick_provisioned.max() > 1


def test_default_profile_loads_and_bad_profiles_are_named(tmp_path):
    profile = load_profile()
    assert profile.kv_cache_tokens > 0 and "H100" in profile.name
    assert profile.capacity_rps(np.array([1000]), np.array([200])) == pytest.approx(
        1 / profile.request_seconds(np.array([1000]), np.array([200]))[0]
    )
    path = tmp_path / "p.yaml"
    path.write_text(profile_text(replace(profile, max_num_seqs=0)), encoding="utf-8")
    with pytest.raises(ProfileError, match="max_num_seqs=0 must be > 0"):
        load_profile(path)
    path.write_text("name: x\n", encoding="utf-8")
    with pytest.raises(ProfileError, match="missing gpus_per_replica"):
        load_profile(path)


def profile_text(profile):
    from dataclasses import asdict

    return "".join(
        f"{key}: {value!r}\n" if key != "name" else f"name: {value}\n"
        for key, value in asdict(profile).items()
    )


@pytest.mark.parametrize(
    ("work", "window", "means"),
    [
        ([1, 3, 5, 7, 9], 2, [2, 2, 6, 6, 9]),
        ([1, 3, 5, 7, 9], 1, [1, 3, 5, 7, 9]),
        ([4, 0, 0, 0], 10, [1, 1, 1, 1]),
    ],
)
def test_window_means_replace_each_second_by_its_blocks_mean(work, window, means):
    assert window_means(np.asarray(work, float), window).tolist() == means


def test_an_oracle_blind_to_bursts_plans_for_each_windows_mean():
    # Quiet (one request every 10 s) for 1200 s, with a 20 s burst of 2000 requests at 300 s.
    quiet = np.arange(0.0, 1200.0, 10.0)
    burst = np.linspace(300.0, 320.0, 2000)
    arrivals = np.sort(np.concatenate([quiet, burst]))
    trace = trace_of(arrivals, np.full(len(arrivals), 200), np.full(len(arrivals), 50))

    def plan(foresight):
        return OracleSchedule(trace, PROFILE, 1.0, 30.0, (1, 1000), foresight).plan

    seeing, blind = plan(None), plan(600)
    # Knowing where the burst falls, it plans a spike for it and little elsewhere ...
    assert seeing.max() > seeing[700:1100].max()
    # ... blind to it, it spreads the burst's work over its window: flat inside each window
    # (away from the next window's lead) and below the spike.
    assert len(set(blind[:550].tolist())) == 1
    assert len(set(blind[600:1150].tolist())) == 1
    assert blind[:550][0] < seeing.max()
    assert blind[:550][0] > blind[600:1150][0]

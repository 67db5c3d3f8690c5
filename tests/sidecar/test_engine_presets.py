"""Engine presets: the settings they fill (and what overrides them), and per preset a real
Prometheus scraping a loopback exporter that serves the engine's own metric names (vLLM's v0 and
V1 KV-cache gauges, each, and a fleet mixing them), the preset's queries read through the
sidecar's PrometheusReader and fed to decide(), which must ask for what each signal implies.

The exporter is not the engine: it serves the metric names and types the engines publish (gauges,
counters, histogram buckets), with counters that grow at a fixed rate per second of wall time, so
every `rate()` and `histogram_quantile()` the presets run has one exact answer.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import aiohttp
import pytest

from autoscaler import Decision, DecisionState, Observations, Signal, decide
from autoscaler.latency_misses import share_over
from sidecar.control_loop import workload_queries
from sidecar.engine_presets import PresetError, engine_presets, parse_preset
from sidecar.prometheus_reader import PrometheusReader
from sidecar.settings import SettingsError, WorkloadSettings, parse_settings
from tests.conftest import eventually
from tests.fakes import FakeClock

# --- settings -----------------------------------------------------------------------------------


def _workload(extra: str) -> str:
    return f"kubernetes: {{enabled: false}}\nworkloads:\n  - name: llama\n    namespace: ml\n{extra}"


def test_the_vllm_preset_fills_every_signal_it_knows_and_the_workload_overrides_win() -> None:
    settings = parse_settings(
        _workload(
            "    preset: vllm\n    ttft_target_seconds: 2\n"
            "    queries: {queue_depth: 'sum(my_queue)', p99_latency: null}\n"
        )
    )
    queries = workload_queries(settings.workloads[0])
    assert set(queries) == {
        Signal.LOAD,
        Signal.QUEUE_DEPTH,
        Signal.KV_CACHE_UTILIZATION,
        Signal.TTFT,
        Signal.TTFT_HISTOGRAM,
    }
    assert queries[Signal.QUEUE_DEPTH] == "sum(my_queue)"
    assert 'vllm:request_success_total{namespace="ml", pod=~"llama-.*"}' in queries[Signal.LOAD]
    kv = queries[Signal.KV_CACHE_UTILIZATION]
    assert "vllm:kv_cache_usage_perc" in kv and "vllm:gpu_cache_usage_perc" in kv
    assert "vllm:time_to_first_token_seconds_bucket" in queries[Signal.TTFT]
    # No capacity in the settings: the policy has none until one is learned.
    assert settings.workloads[0].to_policy().replica_capacity_rps is None


def test_token_load_and_a_selector_of_ones_own() -> None:
    settings = parse_settings(
        _workload(
            "    preset: vllm\n    load_unit: tokens\n    replica_capacity_rps: 6000\n"
            '    preset_selector: \'app="$workload", model="$model"\'\n    labels: {model: llama-3}\n'
        )
    )
    load = workload_queries(settings.workloads[0])[Signal.LOAD]
    assert load == (
        'sum(rate(vllm:prompt_tokens_total{app="llama", model="llama-3"}[1m]))'
        ' + sum(rate(vllm:generation_tokens_total{app="llama", model="llama-3"}[1m]))'
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        pytest.param(
            "    preset: vlm\n",
            "preset='vlm' is not a known engine preset: allowed ['tgi', 'vllm']",
            id="an unknown preset names the known ones",
        ),
        pytest.param(
            "    queries: {load: 'sum(x)'}\n",
            "replica_capacity_rps is unset and cannot be learned: set it, or give queries.queue_depth",
            id="no capacity and nothing to learn it from",
        ),
        pytest.param(
            "    preset: vllm\n    queries: {queue_depth: null}\n",
            "replica_capacity_rps is unset and cannot be learned",
            id="a TTFT query without a bound cannot teach a capacity",
        ),
        pytest.param(
            "    preset: vllm\n    load_unit: bytes\n    replica_capacity_rps: 1\n",
            "load_unit='bytes': Input should be 'requests' or 'tokens'",
            id="an unknown load unit names the allowed ones",
        ),
        pytest.param(
            "    preset: vllm\n    kv_cache_utilization_target: 1.5\n    replica_capacity_rps: 1\n",
            "kv_cache_utilization_target=1.5: Input should be less than or equal to 1",
            id="a KV-cache target over 1",
        ),
        pytest.param(
            "    preset: vllm\n    queries: {ttft: 'x{a=\"$pod\"}'}\n    replica_capacity_rps: 1\n",
            "queries.ttft uses unknown placeholder(s) ['pod']",
            id="an override's placeholders are checked like any query",
        ),
    ],
)
def test_bad_preset_settings_name_what_is_wrong(extra: str, message: str) -> None:
    with pytest.raises(SettingsError) as raised:
        parse_settings(_workload(extra))
    assert message in str(raised.value)
    assert str(raised.value).count("\n") <= 1, "one line per bad field"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("[1, 2]", "expected a mapping", id="not a mapping"),
        pytest.param("engine: x\nselector: y\nqueries: {queue_depth: q}", "at least load", id="no load"),
        pytest.param(
            "engine: x\nselector: y\nqueries: {load: q, ttfb: t}", "['ttfb'] are not signals", id="typo"
        ),
        pytest.param("engine: x\nselector: y\nqueries: {load: 3}", "must be text", id="a number"),
        pytest.param("engine: x\nselector: y\nqueries: {load: q}\nextra: 1", "unknown field", id="extra"),
    ],
)
def test_a_malformed_preset_file_is_refused(text: str, message: str) -> None:
    with pytest.raises(PresetError, match="preset broken") as raised:
        parse_preset("broken", text)
    assert message in str(raised.value)


def test_every_shipped_preset_parses_and_offers_a_token_load() -> None:
    presets = engine_presets()
    assert {"vllm", "tgi"} <= set(presets)
    for preset in presets.values():
        assert preset.token_load is not None and Signal.LOAD in preset.queries


# --- a real Prometheus scraping the engines' metric names ----------------------------------------


Labels = tuple[tuple[str, str], ...]


@dataclass
class EngineExporter:
    """Serves gauges as set and counters that grow by a fixed rate per second since `started`,
    in the text exposition format with TYPE lines; every sample carries the time it was computed
    for, so a `rate()` over a window the scrapes cover is exact."""

    gauges: dict[tuple[str, Labels], float] = field(default_factory=dict)
    counters: dict[tuple[str, Labels], float] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=lambda: time.time() - 3600.0)

    def gauge(self, name: str, value: float, **labels: str) -> None:
        self.types[name] = "gauge"
        self.gauges[(name, tuple(sorted(labels.items())))] = value

    def counter(self, name: str, per_second: float, **labels: str) -> None:
        self.types[name.removesuffix("_total")] = "counter"
        self.counters[(name, tuple(sorted(labels.items())))] = per_second

    def histogram(self, name: str, per_second: dict[str, float], mean: float, **labels: str) -> None:
        """Observations per second by bucket bound (cumulative, "+Inf" last); `mean` for _sum."""
        self.types[name] = "histogram"
        for bound, rate in per_second.items():
            self.counters[(f"{name}_bucket", tuple(sorted({**labels, "le": bound}.items())))] = rate
        total = per_second["+Inf"]
        self.counters[(f"{name}_count", tuple(sorted(labels.items())))] = total
        self.counters[(f"{name}_sum", tuple(sorted(labels.items())))] = total * mean

    def render(self) -> bytes:
        stamp = int(time.time() * 1000)
        elapsed = stamp / 1000 - self.started
        lines = [f"# TYPE {name} {kind}" for name, kind in sorted(self.types.items())]
        samples = [*self.gauges.items(), *((k, rate * elapsed) for k, rate in self.counters.items())]
        for (name, labels), value in samples:
            rendered = ",".join(f'{k}="{v}"' for k, v in labels)
            lines.append(f"{name}{{{rendered}}} {value!r} {stamp}")
        return ("\n".join(lines) + "\n").encode()


# All of a pod's first tokens and requests land in (0.5, 1.0]: p99 = 0.5 + 0.5 x 0.99 = 0.995 s.
_LATENCY_BUCKETS = {"0.5": 0.0, "1.0": 10.0, "2.5": 10.0, "+Inf": 10.0}
_P99 = 0.995
V0 = ("vllm:gpu_cache_usage_perc",)
V1 = ("vllm:kv_cache_usage_perc",)
BOTH = (*V0, *V1)
# One namespace per fleet, all served by one exporter to one Prometheus: `rate(...[1m])` is exact
# only once a minute of scrapes fills its window, which the tests then share.
FLEETS = {
    "v0": {"llama-0": V0, "llama-1": V0},
    "v1": {"llama-0": V1, "llama-1": V1},
    "mixed": {"llama-0": V0, "llama-1": BOTH},
}


def _serve_vllm(
    exporter: EngineExporter, namespace: str, pod: str, kv_names: tuple[str, ...], kv: float, scale: float
) -> None:
    labels = {"namespace": namespace, "pod": pod, "model_name": "llama"}
    exporter.counter("vllm:request_success_total", 3.0 * scale, **labels)
    exporter.counter("vllm:prompt_tokens_total", 1000.0 * scale, **labels)
    exporter.counter("vllm:generation_tokens_total", 100.0 * scale, **labels)
    exporter.gauge("vllm:num_requests_waiting", 4.0 * scale, **labels)
    exporter.gauge("vllm:num_requests_running", 20.0, **labels)
    for name in kv_names:
        exporter.gauge(name, kv, **labels)
    exporter.histogram("vllm:time_to_first_token_seconds", _LATENCY_BUCKETS, 0.8, **labels)
    exporter.histogram("vllm:e2e_request_latency_seconds", _LATENCY_BUCKETS, 0.8, **labels)


def _serve_tgi(exporter: EngineExporter) -> None:
    for pod, scale in (("llama-0", 1.0), ("llama-1", 3.0), ("other-0", 50.0)):
        labels = {"namespace": "tgi", "pod": pod}
        exporter.counter("tgi_request_success", 2.0 * scale, **labels)
        exporter.gauge("tgi_queue_size", 5.0 * scale, **labels)
        exporter.histogram("tgi_request_duration", _LATENCY_BUCKETS, 0.8, **labels)
        exporter.histogram("tgi_request_input_length", {"+Inf": 2.0 * scale}, 500.0, **labels)
        exporter.histogram("tgi_request_generated_tokens", {"+Inf": 2.0 * scale}, 50.0, **labels)


@pytest.fixture(scope="module")
def engines(module_prometheus_factory) -> Iterator[str]:
    """One exporter for every fleet (each pod pair with KV 0.5 and 0.9, a decoy Deployment the
    selectors must leave out), scraped every second; yields the Prometheus URL."""
    exporter = EngineExporter()
    for namespace, fleet in FLEETS.items():
        for (pod, names), kv, scale in zip(fleet.items(), (0.5, 0.9), (1.0, 2.0), strict=True):
            _serve_vllm(exporter, namespace, pod, names, kv, scale)
        _serve_vllm(exporter, namespace, "mistral-0", BOTH, 0.1, 10.0)
    _serve_tgi(exporter)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = exporter.render()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    prometheus = module_prometheus_factory([f"127.0.0.1:{server.server_address[1]}"], 1.0)
    prometheus.start()
    yield prometheus.url
    server.shutdown()
    thread.join()


def _llm_workload(
    namespace: str, preset: str, extra: str, capacity: float = 2.0
) -> tuple[WorkloadSettings, WorkloadSettings]:
    """The workload as the preset fills it, and the same with `load_unit: tokens`. Rates read a
    hair off their exact value, so the expected counts keep clear of whole-number quotients."""
    text = (
        f"kubernetes: {{enabled: false}}\nworkloads:\n  - name: llama\n    namespace: {namespace}\n"
        f"    preset: {preset}\n    replica_capacity_rps: {capacity:g}\n    target_utilization: 1\n{extra}"
    )
    tokens = text.replace(f"preset: {preset}", f"preset: {preset}\n    load_unit: tokens")
    return parse_settings(text).workloads[0], parse_settings(tokens).workloads[0]


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize(
    "namespace",
    [
        pytest.param("v0", id="vLLM v0: gpu_cache_usage_perc"),
        pytest.param("v1", id="vLLM V1: kv_cache_usage_perc"),
        pytest.param("mixed", id="vLLM mid-upgrade: one pod on v0, one exporting both names"),
    ],
)
async def test_vllm_preset_reads_the_engines_metrics_into_decide(namespace: str, engines: str) -> None:
    workload, tokens = _llm_workload(
        namespace,
        "vllm",
        "    queue_depth_target_per_replica: 2\n    ttft_target_seconds: 0.5\n"
        "    p99_latency_target_seconds: 0.25\n",
    )
    expected = {
        Signal.LOAD: 3.0 + 6.0,
        Signal.QUEUE_DEPTH: 4.0 + 8.0,
        Signal.KV_CACHE_UTILIZATION: (0.5 + 0.9) / 2,
        Signal.TTFT: _P99,
        Signal.P99_LATENCY: _P99,
        "tokens": (1000.0 + 100.0) * 3.0,
    }
    queries = {**workload_queries(workload), "tokens": workload_queries(tokens)[Signal.LOAD]}
    histogram_query = queries.pop(Signal.TTFT_HISTOGRAM)
    readings = await _read_when_settled(engines, queries, expected)
    async with aiohttp.ClientSession() as session:
        reader = PrometheusReader(session, engines, FakeClock(), timeout_seconds=5)
        histogram = await reader.histogram(histogram_query, time.time())
    # Both pods' first tokens all land in (0.5, 1.0], 10/s each: 0.75 s is half way through it.
    assert histogram is not None and histogram.bounds == (0.5, 1.0, 2.5, math.inf)
    assert histogram.counts == pytest.approx((0.0, 20.0, 20.0, 20.0), rel=1e-3)
    assert share_over(histogram, 0.75) == pytest.approx(0.5, rel=1e-3)
    decision = _decide(workload, readings)
    # 9 rps at 2 per replica -> 5; 12 waiting at 2 -> 6; KV 0.7 / 0.8 x 2 ready -> 2;
    # TTFT 0.995 / 0.5 x 2 -> 4; e2e p99 0.995 / 0.25 x 2 -> 8.
    assert decision.recommendations == {
        Signal.LOAD: 5,
        Signal.QUEUE_DEPTH: 6,
        Signal.KV_CACHE_UTILIZATION: 2,
        Signal.TTFT: 4,
        Signal.P99_LATENCY: 8,
    }


@pytest.mark.integration
@pytest.mark.slow
async def test_tgi_preset_reads_the_engines_metrics_into_decide(engines: str) -> None:
    workload, tokens = _llm_workload(
        "tgi", "tgi", "    queue_depth_target_per_replica: 5\n    p99_latency_target_seconds: 0.5\n", 3.0
    )
    queries = workload_queries(workload)
    assert set(queries) == {Signal.LOAD, Signal.QUEUE_DEPTH, Signal.P99_LATENCY}
    expected = {Signal.LOAD: 8.0, Signal.QUEUE_DEPTH: 20.0, Signal.P99_LATENCY: _P99, "tokens": 8.0 * 550.0}
    readings = await _read_when_settled(
        engines, {**queries, "tokens": workload_queries(tokens)[Signal.LOAD]}, expected
    )
    # 8 rps at 3 -> 3; 20 waiting (a gauge: exact) at 5 -> 4; p99 0.995 / 0.5 x 2 -> 4.
    decision = _decide(workload, readings)
    assert decision.recommendations == {Signal.LOAD: 3, Signal.QUEUE_DEPTH: 4, Signal.P99_LATENCY: 4}


def _decide(workload: WorkloadSettings, readings: dict) -> Decision:
    now = time.time()
    signals = {signal: readings[signal] for signal in Signal if signal in readings}
    observations = Observations(at=now, current_replicas=2, ready_replicas=2, **signals)
    decision, _ = decide(now, observations, None, workload.to_policy(), DecisionState())
    return decision


async def _read_when_settled(url: str, queries: dict[str, str], expected: dict[str, float]) -> dict:
    """Each query through the sidecar's reader, once Prometheus has scraped enough for every one
    to read its expected value (a rate over a minute needs a minute of scrapes). Read together,
    as a tick reads them: the preset queries must share one batched request and read in it what
    each reads alone."""
    readings: dict = {}
    async with aiohttp.ClientSession() as session:
        reader = PrometheusReader(session, url, FakeClock(), timeout_seconds=5)
        alone = PrometheusReader(session, url, FakeClock(), timeout_seconds=5)

        async def settled() -> bool:
            at = time.time()
            before = reader.stats.queries_total
            answers = await asyncio.gather(*(reader.instant(query, at) for query in queries.values()))
            readings.update(zip(queries, answers, strict=True))
            readings["requests"] = reader.stats.queries_total - before
            readings["alone"] = {name: await alone.instant(query, at) for name, query in queries.items()}
            return all(
                readings[name] is not None and readings[name].value == pytest.approx(value, rel=1e-3)
                for name, value in expected.items()
            )

        await eventually(settled, timeout=180.0, what="every preset query's value", debug=lambda: readings)
    assert readings.pop("requests") == 1
    assert readings.pop("alone") == {name: readings[name] for name in queries}
    return readings

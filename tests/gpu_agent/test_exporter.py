"""The exporter renders snapshots built from GpuSample values (plain data, no fakes needed), parsed
back with prometheus_client's own text parser; the routes are served by a real aiohttp server on
loopback."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gpu_agent.exporter import AgentSnapshot, LatestSnapshot, build_app, build_registry
from gpu_agent.nvml_reader import GpuProcess, GpuSample
from gpu_agent.pod_resources import PodRef

GIB = 1024**3
H100 = "GPU-11111111-2222-3333-4444-555555555555"
A100 = "GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
MIG = "MIG-0f0f0f0f-1111-2222-3333-444444444444"
TRITON = PodRef("ml", "triton-0", "server")
VLLM = PodRef("ml", "vllm-0", "engine")

WHOLE_GPU = GpuSample(
    index=0,
    uuid=H100,
    model_name="NVIDIA H100 80GB HBM3",
    utilization_percent=63,
    memory_copy_utilization_percent=20,
    memory_used_bytes=10 * GIB,
    memory_free_bytes=70 * GIB,
    memory_total_bytes=80 * GIB,
    power_watts=312.5,
    temperature_celsius=54.0,
    sm_clock_megahertz=1755,
    encoder_utilization_percent=0,
    decoder_utilization_percent=5,
    processes=(GpuProcess(1234, 4 * GIB),),
)
MIG_PARENT = GpuSample(
    index=1,
    uuid=A100,
    model_name="NVIDIA A100-SXM4-40GB",
    memory_used_bytes=15 * GIB,
    power_watts=90.0,
    unavailable={"utilization": "NotSupported"},
)
MIG_INSTANCE = GpuSample(
    index=1,
    uuid=MIG,
    model_name="NVIDIA A100-SXM4-40GB MIG 1g.5gb",
    gpu_instance_id=1,
    parent_uuid=A100,
    memory_used_bytes=3 * GIB,
    unavailable={"utilization": "NotSupported"},
)
LOST = GpuSample(index=2, uuid=None, unavailable={"device": "GpuIsLost"})


def _snapshot(**overrides) -> AgentSnapshot:
    values = {
        "sampled_at": 1_700_000_000.0,
        "nvml_up": True,
        "driver_version": "550.54.15",
        "gpus": (WHOLE_GPU, MIG_PARENT, MIG_INSTANCE, LOST),
        "pods_by_device": {H100: (TRITON,), MIG: (VLLM,)},
        "pod_resources_up": True,
    }
    return AgentSnapshot(**(values | overrides))


def _scrape(snapshot: AgentSnapshot | None) -> list[tuple[str, dict[str, str], float]]:
    latest = LatestSnapshot()
    if snapshot is not None:
        latest.publish(snapshot)
    text = generate_latest(build_registry(latest, hostname="node-a")).decode()
    return [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def _values(samples, name: str, **labels: str) -> list[float]:
    return [value for n, lbls, value in samples if n == name and labels.items() <= lbls.items()]


def _dcgm_labels(gpu: str, uuid: str, model: str, **extra: str) -> dict[str, str]:
    return {
        "gpu": gpu,
        "UUID": uuid,
        "device": f"nvidia{gpu}",
        "modelName": model,
        "Hostname": "node-a",
        "DCGM_FI_DRIVER_VERSION": "550.54.15",
    } | extra


@pytest.mark.parametrize(
    ("name", "labels", "expected"),
    [
        pytest.param(
            "gpu_agent_utilization_ratio", {"uuid": H100}, [0.63], id="utilization percent -> ratio"
        ),
        pytest.param("DCGM_FI_DEV_GPU_UTIL", {"UUID": H100}, [63.0], id="DCGM utilization stays in percent"),
        pytest.param("gpu_agent_memory_used_bytes", {"uuid": H100}, [10 * GIB], id="memory in bytes"),
        pytest.param("DCGM_FI_DEV_FB_USED", {"UUID": H100, "gpu": "0"}, [10240.0], id="DCGM memory in MiB"),
        pytest.param("DCGM_FI_DEV_FB_FREE", {"UUID": H100}, [71680.0], id="DCGM free memory in MiB"),
        pytest.param("gpu_agent_sm_clock_hertz", {"uuid": H100}, [1.755e9], id="SM clock MHz -> Hz"),
        pytest.param("DCGM_FI_DEV_SM_CLOCK", {"UUID": H100}, [1755.0], id="DCGM SM clock in MHz"),
        pytest.param("DCGM_FI_DEV_POWER_USAGE", {"UUID": H100}, [312.5], id="DCGM power in watts"),
        pytest.param("gpu_agent_decoder_utilization_ratio", {"uuid": H100}, [0.05], id="decoder ratio"),
        pytest.param("gpu_agent_running_processes", {"uuid": H100}, [1.0], id="process count"),
        pytest.param("gpu_agent_utilization_ratio", {"uuid": A100}, [], id="unsupported field has no series"),
        pytest.param(
            "DCGM_FI_DEV_GPU_UTIL", {"gpu": "1"}, [], id="unsupported field has no DCGM series either"
        ),
        pytest.param("gpu_agent_temperature_celsius", {"uuid": A100}, [], id="missing temperature is not 0"),
        pytest.param("gpu_agent_memory_used_bytes", {"gpu": "2"}, [], id="lost GPU has no value series"),
        pytest.param(
            "gpu_agent_field_unavailable",
            {"gpu": "2", "field": "device", "reason": "GpuIsLost"},
            [1.0],
            id="lost GPU is reported with its reason",
        ),
        pytest.param(
            "gpu_agent_field_unavailable",
            {"uuid": MIG, "gpu_instance": "1", "field": "utilization", "reason": "NotSupported"},
            [1.0],
            id="MIG NotSupported is reported per instance",
        ),
        pytest.param(
            "DCGM_FI_DEV_POWER_USAGE",
            {"UUID": A100},
            [90.0],
            id="MIG instance repeats its board's power; the parent has no DCGM series",
        ),
        pytest.param(
            "gpu_agent_power_watts", {"uuid": A100}, [90.0], id="our parent series keeps the board's power"
        ),
        pytest.param("gpu_agent_power_watts", {"uuid": MIG}, [], id="our instance series does not copy it"),
        pytest.param("gpu_agent_nvml_up", {}, [1.0], id="NVML up"),
        pytest.param("gpu_agent_pod_resources_up", {}, [1.0], id="pod resources up"),
        pytest.param("gpu_agent_last_sample_timestamp_seconds", {}, [1_700_000_000.0], id="sample time"),
    ],
)
def test_series_values(name, labels, expected):
    assert _values(_scrape(_snapshot()), name, **labels) == expected


@pytest.mark.parametrize(
    ("name", "uuid", "expected_labels"),
    [
        pytest.param(
            "DCGM_FI_DEV_FB_USED",
            H100,
            [
                _dcgm_labels(
                    "0", H100, "NVIDIA H100 80GB HBM3", namespace="ml", pod="triton-0", container="server"
                )
            ],
            id="DCGM series of an allocated GPU carry dcgm-exporter's labels and the pod",
        ),
        pytest.param(
            "DCGM_FI_DEV_FB_USED",
            A100,
            [
                _dcgm_labels(
                    "1",
                    A100,
                    "NVIDIA A100-SXM4-40GB",
                    GPU_I_ID="1",
                    namespace="ml",
                    pod="vllm-0",
                    container="engine",
                ),
            ],
            id="MIG GPU appears only as instances: parent's UUID and model, GPU_I_ID, the instance's pod",
        ),
        pytest.param(
            "gpu_agent_memory_used_bytes",
            H100,
            [{"gpu": "0", "uuid": H100}],
            id="our value series carry no pod labels",
        ),
        pytest.param(
            "gpu_agent_gpu_pod_info",
            H100,
            [{"gpu": "0", "uuid": H100, "namespace": "ml", "pod": "triton-0", "container": "server"}],
            id="attribution lives in one info series",
        ),
    ],
)
def test_series_labels(name, uuid, expected_labels):
    samples = _scrape(_snapshot())
    parent_uuid = "UUID" if name.startswith("DCGM") else "uuid"
    assert [
        labels for n, labels, _ in samples if n == name and labels[parent_uuid] == uuid
    ] == expected_labels


@pytest.mark.parametrize(
    ("pods_by_device", "expected_pods"),
    [
        pytest.param(
            {H100: (TRITON, VLLM)}, ["triton-0", "vllm-0"], id="shared GPU: one DCGM series per holder"
        ),
        pytest.param(
            {"nvidia0": (TRITON,)}, ["triton-0"], id="device-name ids (GKE) attribute the whole GPU"
        ),
        pytest.param({}, [None], id="unallocated GPU has no pod label at all"),
        pytest.param(None, [None], id="unknown attribution has no pod label at all"),
    ],
)
def test_dcgm_attribution(pods_by_device, expected_pods):
    samples = _scrape(_snapshot(pods_by_device=pods_by_device))
    pods = [
        labels.get("pod") for n, labels, _ in samples if n == "DCGM_FI_DEV_GPU_UTIL" and labels["gpu"] == "0"
    ]
    assert pods == expected_pods


def test_gke_mig_device_names_attribute_the_instance():
    samples = _scrape(_snapshot(pods_by_device={"nvidia1/gi1": (VLLM,)}))
    pods = [
        labels.get("pod") for n, labels, _ in samples if n == "DCGM_FI_DEV_FB_USED" and labels["gpu"] == "1"
    ]
    assert pods == ["vllm-0"]


def test_a_mig_gpu_whose_instances_could_not_be_read_is_not_shown_as_a_whole_gpu():
    parent = replace(MIG_PARENT, mig_enabled=True, unavailable={"mig_instances": "Unknown"})
    samples = _scrape(_snapshot(gpus=(WHOLE_GPU, parent, LOST)))
    assert [labels["UUID"] for n, labels, _ in samples if n == "DCGM_FI_DEV_FB_USED"] == [H100]
    unavailable = [labels["field"] for n, labels, _ in samples if n == "gpu_agent_field_unavailable"]
    assert "mig_instances" in unavailable


def test_nvml_down_exports_only_its_state():
    samples = _scrape(_snapshot(nvml_up=False, gpus=(), driver_version=None, pod_resources_up=None))
    assert {name for name, _, _ in samples} == {
        "gpu_agent_nvml_up",
        "gpu_agent_last_sample_timestamp_seconds",
    }
    assert _values(samples, "gpu_agent_nvml_up") == [0.0]


def test_nothing_is_exported_before_the_first_sample():
    assert _scrape(None) == []


@pytest.fixture
async def served() -> AsyncIterator[tuple[str, LatestSnapshot, list[bool]]]:
    latest = LatestSnapshot()
    health = [True]
    runner = web.AppRunner(build_app(build_registry(latest, "node-a"), lambda: health[0]))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", latest, health
    await runner.cleanup()


@pytest.mark.integration
async def test_metrics_route_serves_the_latest_snapshot(served):
    url, latest, _ = served
    async with aiohttp.ClientSession() as session:
        latest.publish(_snapshot())
        async with session.get(f"{url}/metrics") as response:
            first = await response.text()
            content_type = response.headers["Content-Type"]
        latest.publish(_snapshot(gpus=(GpuSample(index=0, uuid=H100, utilization_percent=7),)))
        async with session.get(f"{url}/metrics") as response:
            second = await response.text()
    assert content_type.startswith("text/plain; version=0.0.4")
    assert 'gpu_agent_utilization_ratio{gpu="0",uuid="' + H100 + '"} 0.63' in first
    assert 'gpu_agent_utilization_ratio{gpu="0",uuid="' + H100 + '"} 0.07' in second


@pytest.mark.integration
@pytest.mark.parametrize(
    ("healthy", "expected_status"),
    [pytest.param(True, 200, id="healthy loop: 200"), pytest.param(False, 503, id="stalled loop: 503")],
)
async def test_healthz_follows_the_loop(served, healthy, expected_status):
    url, _, health = served
    health[0] = healthy
    async with aiohttp.ClientSession() as session, session.get(f"{url}/healthz") as response:
        assert response.status == expected_status


@pytest.mark.slow
@pytest.mark.integration
async def test_a_real_prometheus_ingests_every_series(served, prometheus_factory):
    """Mixed label sets within one family (pod labels only on allocated GPUs, GPU_I_ID only on MIG)
    and the 0.0.4 content type, checked by the consumer that matters. Takes ~6 s: Prometheus hands
    static targets to its scrape manager on a 5 s cycle."""
    url, latest, _ = served
    latest.publish(_snapshot())
    prometheus = prometheus_factory([url.removeprefix("http://")])
    prometheus.start()
    query = f"{prometheus.url}/api/v1/query"
    async with aiohttp.ClientSession() as session:
        utilization = await _query_until_present(session, query, "DCGM_FI_DEV_GPU_UTIL")
        fb_used = await _query_until_present(session, query, "DCGM_FI_DEV_FB_USED")
        ours = await _query_until_present(session, query, "gpu_agent_memory_used_bytes")
        # The join documented in gpu_agent/exporter.py: pod labels onto our per-device series.
        joined = await _query_until_present(
            session, query, "gpu_agent_gpu_pod_info * on(uuid) group_left gpu_agent_utilization_ratio"
        )
    assert [(r["metric"]["pod"], r["value"][1]) for r in utilization] == [("triton-0", "63")]
    memory = sorted((r["metric"].get("GPU_I_ID", ""), r["metric"]["pod"], r["value"][1]) for r in fb_used)
    assert memory == [("", "triton-0", "10240"), ("1", "vllm-0", "3072")]
    assert len(ours) == 3
    assert [(r["metric"]["pod"], r["value"][1]) for r in joined] == [("triton-0", "0.63")]


async def _query_until_present(session: aiohttp.ClientSession, url: str, expression: str) -> list[dict]:
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        with contextlib.suppress(aiohttp.ClientConnectionError):
            async with session.get(url, params={"query": expression}) as response:
                if response.status == 200:
                    result = (await response.json())["data"]["result"]
                    if result:
                        return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"Prometheus never returned {expression}")
        await asyncio.sleep(0.2)

"""Dashboard queries against a real Prometheus (loopback) that scrapes a running sidecar in embedded
replay mode (`serve --replay`) and a running gpu_agent.

The agent runs over the fake libnvidia-ml.so.1 (tests/gpu_agent/fake_nvml, loaded by the real
nvidia-ml-py binding through LD_LIBRARY_PATH) and asks a real gRPC pod-resources server on a Unix
socket, which says pod ml/llama-0 holds the fake H100; so the GPU-utilization panel's join returns
the fake's 63 % for that pod. Only ready replicas, which come from kube-state-metrics, the cost
per 1,000 requests, which needs a price the replay does not set, the learned capacity, which
the replay's workload has no queue to learn from, the TTFT attainment, which it declares no
latency objective for, and the Prometheus query panel,
which a replay does not use, are not asserted (SKIPPED_TARGETS). Everything else, the cold-start
estimate (learned in replay from the simulated cluster's pod starts) and the forecast error
included, must return data. The test lasts well under 5 minutes, so the forecast-error panel's
`offset 5m` is shortened to 5 s; the query is otherwise the dashboard's."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
import yaml

from gpu_agent import podresources_pb2 as pb
from gpu_agent import podresources_pb2_grpc
from tests.deploy.conftest import DASHBOARD_FILE, REPO
from tests.gpu_agent.fake_nvml_build import SONAME, compile_fake_nvml

PROMETHEUS = shutil.which("prometheus")
TRACE = REPO / "sidecar" / "traces" / "nasa-http-1995-jul-4d.csv"
GPU_PANEL = "GPU utilization per workload pod"
# The fake's GPU 0 (see the header of tests/gpu_agent/fake_nvml/fake_nvml.c): 63 % busy.
FAKE_H100_UUID = "GPU-11111111-2222-3333-4444-555555555555"
FAKE_H100_UTILIZATION_RATIO = 0.63
# Targets within a panel that read series from outside the project.
# Ready replicas come from kube-state-metrics; Prometheus query errors need failing queries, and a
# replay reads its trace, not Prometheus (the outage test in tests/sidecar/test_service.py reads them).
SKIPPED_TARGETS = (
    "kube_deployment_status_replicas_ready",
    "autoscaler_prometheus_query_errors_total",
    "autoscaler_prometheus_query_duration_seconds_bucket",
    # The replay runs without a cluster: no Kubernetes calls (test_kubernetes_client.py counts them).
    "autoscaler_kubernetes_request_errors_total",
    "autoscaler_kubernetes_request_duration_seconds_bucket",
    # The replay's workload (sidecar.replay_simulation.replay_workload) sets no price_per_gpu_hour, so this
    # series is absent by design; tests/metrics_adapter/test_telemetry.py checks it with a price.
    "max by (namespace, workload) (autoscaler_cost_per_1k_requests",
    # The replay's workload has a capacity and no queue to learn one from; absent until learned by
    # design, tests/metrics_adapter/test_telemetry.py checks both series once one is.
    "autoscaler_learned_capacity_per_replica",
    "autoscaler_learned_capacity_pairs",
    # The replay's workload (a request-rate trace) declares no latency objective: no TTFT series by
    # design; tests/metrics_adapter/test_telemetry.py checks both with one.
    "autoscaler_objective_ttft_attainment",
    "autoscaler_objective_trailing_ttft_attainment",
)
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$namespace": ".*", "$workload": ".*"}
# Look-backs longer than the test: the sidecar has only been publishing for a few seconds.
SHORTENED_WINDOWS = {"offset 5m": "offset 5s"}
DEADLINE_SECONDS = 40.0

pytestmark = [
    pytest.mark.slow,
    pytest.mark.integration,
    pytest.mark.skipif(PROMETHEUS is None, reason="the prometheus binary is not installed"),
]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, response.read()
    except OSError:
        return 0, b""


def _wait_for(url: str, process: subprocess.Popen, log: Path, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{what} exited early (code {process.returncode}): {log.read_text()[-400:]}")
        if _get(url)[0] == 200:
            return
        time.sleep(0.2)
    pytest.fail(f"{what} did not answer {url} within {DEADLINE_SECONDS} s: {log.read_text()[-400:]}")


def _start(
    command: list[str],
    log: Path,
    stack: list[subprocess.Popen],
    environment: Mapping[str, str] | None = None,
) -> subprocess.Popen:
    env = None if environment is None else os.environ | dict(environment)
    process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=REPO, env=env)
    stack.append(process)
    return process


class _Kubelet(podresources_pb2_grpc.PodResourcesListerServicer):
    """The kubelet's answer for one GPU node: a vLLM-style pod holding the fake H100."""

    def List(self, request, context):  # noqa: N802 - gRPC method name
        devices = [pb.ContainerDevices(resource_name="nvidia.com/gpu", device_ids=[FAKE_H100_UUID])]
        container = pb.ContainerResources(name="engine", devices=devices)
        return pb.ListPodResourcesResponse(
            pod_resources=[pb.PodResources(name="llama-0", namespace="ml", containers=[container])]
        )


@pytest.fixture
def pod_resources_socket() -> Iterator[Path]:
    """A threaded (not asyncio) gRPC server: this test polls with blocking calls on its own thread."""
    # Unix socket paths are limited to 107 bytes; pytest's tmp_path can exceed that.
    with tempfile.TemporaryDirectory(prefix="podres") as directory:
        path = Path(directory) / "kubelet.sock"
        server = grpc.server(ThreadPoolExecutor(max_workers=2))
        podresources_pb2_grpc.add_PodResourcesListerServicer_to_server(_Kubelet(), server)
        server.add_insecure_port(f"unix:{path}")
        server.start()
        yield path
        server.stop(grace=None)


@pytest.fixture
def fake_nvml_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "fake_nvml"
    directory.mkdir()
    compile_fake_nvml(directory / SONAME)
    return directory


@pytest.fixture
def processes():
    stack: list[subprocess.Popen] = []
    yield stack
    for process in reversed(stack):
        process.terminate()
    for process in stack:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def _panel_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD_FILE.read_text())
    queries = []
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            if any(name in target["expr"] for name in SKIPPED_TARGETS):
                continue
            expr = target["expr"]
            for variable, value in {**GRAFANA_VARIABLES, **SHORTENED_WINDOWS}.items():
                expr = expr.replace(variable, value)
            queries.append((panel["title"], expr))
    return queries


def test_every_panel_returns_data_from_a_running_sidecar_and_agent(
    tmp_path, processes, fake_nvml_dir, pod_resources_socket
):
    if not TRACE.is_file():
        pytest.skip(f"bundled trace {TRACE.name} is missing")
    sidecar_port, agent_port, prometheus_port = _free_port(), _free_port(), _free_port()
    config = tmp_path / "sidecar.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "server": {"host": "127.0.0.1", "health_port": sidecar_port, "http_port": 0, "grpc_port": 0},
                "kubernetes": {"enabled": False},
            }
        )
    )
    sidecar = _start(
        [
            sys.executable,
            "-m",
            "sidecar",
            "serve",
            "--config",
            str(config),
            "--replay",
            str(TRACE),
            "--speedup",
            "600",
        ],
        tmp_path / "sidecar.log",
        processes,
    )
    agent = _start(
        [
            sys.executable,
            "-m",
            "gpu_agent",
            "--listen",
            f"127.0.0.1:{agent_port}",
            "--pod-resources-socket",
            str(pod_resources_socket),
        ],
        tmp_path / "agent.log",
        processes,
        # The binding's CDLL("libnvidia-ml.so.1") finds the fake here, as it would a driver's.
        {"LD_LIBRARY_PATH": str(fake_nvml_dir)},
    )
    _wait_for(f"http://127.0.0.1:{agent_port}/metrics", agent, tmp_path / "agent.log", "gpu_agent")
    _wait_for(f"http://127.0.0.1:{sidecar_port}/metrics", sidecar, tmp_path / "sidecar.log", "sidecar")
    prometheus_config = tmp_path / "prometheus.yml"
    prometheus_config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "scrape_configs": [
                    {
                        "job_name": "predictive-autoscaler",
                        "static_configs": [{"targets": [f"127.0.0.1:{sidecar_port}"]}],
                    },
                    {"job_name": "gpu-agent", "static_configs": [{"targets": [f"127.0.0.1:{agent_port}"]}]},
                ],
            }
        )
    )
    prometheus = _start(
        [
            PROMETHEUS,
            f"--config.file={prometheus_config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}",
        ],
        tmp_path / "prometheus.log",
        processes,
    )
    api = f"http://127.0.0.1:{prometheus_port}"
    _wait_for(f"{api}/-/ready", prometheus, tmp_path / "prometheus.log", "prometheus")

    queries = [*_panel_queries(), ("agent scraped", 'up{job="gpu-agent"} == 1')]
    # Every target of the 16 panels less the skipped ones: 20 targets, plus `up`.
    assert len(queries) == 21
    pending = dict.fromkeys(queries)
    answers: dict[tuple[str, str], list[dict]] = {}
    deadline = time.monotonic() + DEADLINE_SECONDS
    while pending and time.monotonic() < deadline:
        for title, expr in list(pending):
            status, body = _get(f"{api}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
            assert status in (0, 200), (title, expr, body)
            if status == 200:
                reply = json.loads(body)
                assert reply["status"] == "success", (title, expr, reply)
                if reply["data"]["result"]:
                    answers[(title, expr)] = reply["data"]["result"]
                    del pending[(title, expr)]
        time.sleep(1.0)
    assert not pending, f"panels with no data after {DEADLINE_SECONDS} s: {sorted(pending)}"
    # The GPU panel's join lands on the pod the kubelet named, with the device's own value.
    ((_, gpu_answer),) = [(key, result) for key, result in answers.items() if key[0] == GPU_PANEL]
    assert [(r["metric"]["namespace"], r["metric"]["pod"], float(r["value"][1])) for r in gpu_answer] == [
        ("ml", "llama-0", FAKE_H100_UTILIZATION_RATIO)
    ]

"""Dashboard queries against a real Prometheus (loopback) that scrapes a running sidecar in embedded
replay mode (`serve --replay`) and a running gpu_agent.

Panels that need series this machine cannot produce are not asserted: GPU utilization needs NVML
(no GPU here, so the agent reports `gpu_agent_nvml_up 0`) and ready replicas come from
kube-state-metrics; each is named in SKIPPED_PANELS or SKIPPED_TARGETS. Everything else, the
cold-start estimate (learned in replay from the simulated cluster's pod starts) and the forecast
error included, must return data. The test lasts well under 5 minutes, so the forecast-error
panel's `offset 5m` is shortened to 5 s; the query is otherwise the dashboard's."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.deploy.conftest import DASHBOARD_FILE, REPO

PROMETHEUS = shutil.which("prometheus")
TRACE = REPO / "sidecar" / "traces" / "nasa-http-1995-jul-4d.csv"
SKIPPED_PANELS = {"GPU utilization per workload pod": "needs NVML and a GPU"}
# Targets within a panel that read series from outside the project.
SKIPPED_TARGETS = ("kube_deployment_status_replicas_ready",)
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


def _start(command: list[str], log: Path, stack: list[subprocess.Popen]) -> subprocess.Popen:
    process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=REPO)
    stack.append(process)
    return process


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
        if panel["title"] in SKIPPED_PANELS:
            continue
        for target in panel["targets"]:
            if target["expr"].startswith(SKIPPED_TARGETS):
                continue
            expr = target["expr"]
            for variable, value in {**GRAFANA_VARIABLES, **SHORTENED_WINDOWS}.items():
                expr = expr.replace(variable, value)
            queries.append((panel["title"], expr))
    return queries


def test_every_panel_returns_data_from_a_running_sidecar_and_agent(tmp_path, processes):
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
            "",
        ],
        tmp_path / "agent.log",
        processes,
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
    # Every panel but the GPU one, less the ready-replicas target: 11 targets in 7 panels, plus `up`.
    assert len(queries) == 12
    pending = dict.fromkeys(queries)
    deadline = time.monotonic() + DEADLINE_SECONDS
    while pending and time.monotonic() < deadline:
        for title, expr in list(pending):
            status, body = _get(f"{api}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
            assert status in (0, 200), (title, expr, body)
            if status == 200:
                reply = json.loads(body)
                assert reply["status"] == "success", (title, expr, reply)
                if reply["data"]["result"]:
                    del pending[(title, expr)]
        time.sleep(1.0)
    assert not pending, f"panels with no data after {DEADLINE_SECONDS} s: {sorted(pending)}"

"""The whole sidecar (sidecar.main.serve) against a real Prometheus scraping a test exporter:
history read, forecast made, decision published and served over the external metrics API and
/metrics; then Prometheus stopped
mid-run (decisions hold, signal age grows, /readyz says so) and restarted (it recovers).

The decision core and model registry are the real ones (`sidecar.core.load_core`), with the
`last_value` model and no scale-down window so the recovery is visible within seconds; the
decision rules themselves are tested in tests/autoscaler.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import aiohttp
import pytest

from autoscaler.decision import Reason
from sidecar.clock import SystemClock
from sidecar.core import load_core
from sidecar.main import Service, serve
from sidecar.settings import parse_settings
from sidecar.state_store import StateStore
from tests.conftest import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]

METRIC_PATH = "/apis/external.metrics.k8s.io/v1beta1/namespaces/ml/desired_replicas"


def history(end: int) -> str:
    lines = ["# TYPE load_rps gauge"]
    lines += [f'load_rps{{workload="llama"}} 30 {t}' for t in range(end - 7200, end, 60)]
    return "\n".join([*lines, "# EOF"]) + "\n"


def settings_yaml(prometheus_url: str, state_path: Path) -> str:
    return f"""
prometheus: {{url: "{prometheus_url}", timeout_seconds: 0.5}}
loop: {{tick_seconds: 1, history_step_seconds: 60, history_seconds: 7200, refit_interval_seconds: 600}}
server: {{host: 127.0.0.1, health_port: 0, http_port: 0, grpc_port: 0, allow_unauthenticated: true}}
kubernetes: {{enabled: false}}
state: {{path: "{state_path}"}}
workloads:
  - name: llama
    namespace: ml
    queries: {{load: 'sum(load_rps{{workload="$workload"}})'}}
    replica_capacity_rps: 10
    target_utilization: 1.0
    stale_after_seconds: 3
    forecast: {{model: last_value}}
    behavior:
      scale_down:
        stabilization_window_seconds: 0
        policies: [{{type: Percent, value: 100, period_seconds: 15}}]
"""


async def test_prometheus_outage_holds_decisions_and_recovers(
    prometheus_factory, load_exporter, tmp_path, caplog
):
    load_exporter.set("load_rps", 42.0, workload="llama")
    prometheus = prometheus_factory([load_exporter.address], scrape_interval_seconds=1)
    # Ends ten minutes back: beyond the 5-minute lookback, so it does not add to the live series.
    prometheus.backfill(history((int(time.time()) // 60) * 60 - 600))
    prometheus.start()
    state_path = tmp_path / "state" / "sidecar.state"
    settings = parse_settings(settings_yaml(prometheus.url, state_path))

    stop = asyncio.Event()
    services: list[Service] = []
    task = asyncio.create_task(
        serve(settings, core=load_core(), clock=SystemClock(), stop=stop, started=services.append)
    )
    await eventually(lambda: bool(services), what="service start")
    service = services[0]
    health = f"http://{service.addresses['health']}"

    def published():
        return service.latest.get("ml", "llama")

    await eventually(
        lambda: published() is not None and published().decision.replicas == 5,
        what="5 replicas",
        debug=lambda: (published(), service.query_stats),
    )
    await eventually(lambda: published().forecast is not None, what="a forecast from the backfilled history")
    # last_value forecasts the newest point of the history: the loop appends each live reading (42)
    # to the backfilled 30s, so the forecast follows the live load, not the old history.
    assert published().forecast.path(0.9)[0] == pytest.approx(42.0)

    async with aiohttp.ClientSession() as session:

        async def readyz() -> tuple[int, dict]:
            async with session.get(health + "/readyz") as response:
                return response.status, await response.json()

        await eventually(lambda: _status(readyz, 200), what="ready")
        external = f"http://{service.addresses['external_metrics']}{METRIC_PATH}"

        async def served_replicas() -> str:
            async with session.get(external, params={"labelSelector": "workload=llama"}) as response:
                assert response.status == 200, await response.text()
                return (await response.json())["items"][0]["value"]

        assert await served_replicas() == "5", "the decision is served over the external metrics API"
        async with session.get(health + "/metrics") as response:
            assert 'autoscaler_desired_replicas{namespace="ml",workload="llama"} 5.0' in await response.text()
        async with session.get(health + "/healthz") as response:
            assert response.status == 200

        # Prometheus goes away mid-run. Finding 5: the outage was invisible (no log line, no
        # counter); now /metrics counts the failed queries by workload, and a warning names the URL.
        caplog.set_level(logging.WARNING, logger="sidecar.prometheus_reader")
        prometheus.stop()
        await eventually(lambda: _status(readyz, 503), what="not ready while Prometheus is down")
        _, body = await readyz()
        assert "ml/llama: load signal is" in body["problems"][0]
        held = published()
        assert (held.decision.replicas, held.decision.reason) == (5, Reason.HELD_STALE), "no scale-down"
        age = held.observations.load.age_seconds(held.published_at)
        await eventually(
            lambda: published().observations.load.age_seconds(published().published_at) > age,
            what="the held signal's age to grow",
        )
        assert service.query_stats.errors_total["connection"] > 0
        async with session.get(health + "/metrics") as response:
            exposition = await response.text()
        assert (
            'autoscaler_prometheus_query_errors_total{namespace="ml",reason="connection",signal="load",'
            'workload="llama"}'
        ) in exposition
        assert "autoscaler_prometheus_query_duration_seconds_count" in exposition
        warnings = [r for r in caplog.records if r.name == "sidecar.prometheus_reader"]
        assert warnings and warnings[0].prometheus_url == prometheus.url
        assert prometheus.url in warnings[0].getMessage()
        assert len(warnings) == 1, "one warning per workload per minute, not one per failed query"
        assert await served_replicas() == "5", "HPA keeps reading the held count"

        # Prometheus comes back with lower load: the loop resumes and follows it.
        load_exporter.set("load_rps", 25.0, workload="llama")
        prometheus.start()
        await eventually(
            lambda: (
                published().decision.replicas == 3 and published().decision.reason is not Reason.HELD_STALE
            ),
            what="recovery to 3 replicas",
        )
        await eventually(lambda: _status(readyz, 200), what="ready again")
        assert await served_replicas() == "3"

    stop.set()
    await asyncio.wait_for(task, timeout=60)
    saved = StateStore(state_path).load()
    assert saved.problem is None and saved.state is not None
    assert saved.state.workloads[("ml", "llama")].fitted is not None, "the fitted model was saved at drain"


async def _status(readyz, expected: int) -> bool:
    status, _ = await readyz()
    return status == expected

"""Reaction time: how long a step in load takes to reach the published decision, with a real
Prometheus scraping every second and the sidecar ticking every second. Target: under 5 s.

A loopback exporter serves `load_rps` (a gauge of the current request rate, as a recording rule
or a server's own gauge would); the sidecar's load query is `sum(load_rps{...})`. Each run steps
the gauge from 10 to 100 requests per second and times, from the step:
  prometheus  until an instant query to Prometheus returns the new value (scrape delay; the
              baseline, measured in the same run), and
  published   until the sidecar's LatestDecisions (what every server reads) holds the replica
              count for the new load, and
  served      until GET .../external.metrics.k8s.io/v1beta1/.../desired_replicas over HTTP
              answers it (what an HPA would read).
With a rate() over a window instead of a gauge, add the window's own delay to both.

Usage: .venv/bin/python bench/reaction_time.py [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sidecar.clock import SystemClock  # noqa: E402
from sidecar.core import Core, load_core  # noqa: E402
from sidecar.main import Service, serve  # noqa: E402
from sidecar.settings import parse_settings  # noqa: E402

LOW_RPS, HIGH_RPS = 10.0, 100.0
# A step that has not reached all three points by then is a failure to report, not a hang.
STEP_DEADLINE_SECONDS = 30.0


def core() -> tuple[Core, str, str]:
    """The real decision core (sidecar.main.load_core). The model hardly matters here: an hour of
    flat history gives a flat forecast, so the step reaches the decision through the load signal."""
    return load_core(), "seasonal_naive_daily", "autoscaler.decide + MODELS['seasonal_naive_daily']"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if not shutil.which("prometheus"):
        raise SystemExit("needs the prometheus binary (Debian package `prometheus`)")
    the_core, model, label = core()

    # One workload per run, each with its own series: a run's step must not be in the history
    # (and so in the forecast) of the workload the next run measures.
    names = [f"llama-{i}" for i in range(args.runs)]
    load = dict.fromkeys(names, LOW_RPS)

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text="".join(f'load_rps{{workload="{n}"}} {v}\n' for n, v in load.items()))

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    exporter_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", exporter_port).start()

    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s}\n"
            "scrape_configs:\n"
            f"  - {{job_name: load, static_configs: [{{targets: ['127.0.0.1:{exporter_port}']}}]}}\n"
        )
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        process = subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp}/data",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=error"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            for _ in range(300):
                try:
                    with urllib.request.urlopen(url + "/-/ready", timeout=1):
                        break
                except OSError:
                    time.sleep(0.05)
            settings = parse_settings(
                f"""
prometheus: {{url: "{url}", timeout_seconds: 0.8}}
loop: {{tick_seconds: 1, history_step_seconds: 60, history_seconds: 3600}}
server: {{host: 127.0.0.1, health_port: 0, http_port: 0, grpc_port: 0, allow_unauthenticated: true}}
kubernetes: {{enabled: false}}
workloads:
"""
                + "".join(
                    f"""
  - name: {name}
    namespace: ml
    queries: {{load: 'sum(load_rps{{workload="$workload"}})'}}
    replica_capacity_rps: 10
    target_utilization: 1.0
    max_replicas: 50
    forecast: {{model: {model}}}
"""
                    for name in names
                )
            )
            stop = asyncio.Event()
            services: list[Service] = []
            task = asyncio.create_task(
                serve(settings, core=the_core, clock=SystemClock(), stop=stop, started=services.append)
            )
            while not services:
                await asyncio.sleep(0.01)
            latest = services[0].latest
            low, high = int(LOW_RPS / 10), int(HIGH_RPS / 10)
            seen_by_prometheus: list[float] = []
            published: list[float] = []
            served: list[float] = []
            async with aiohttp.ClientSession() as session:

                async def prometheus_value(name: str) -> float | None:
                    query = {"query": f'sum(load_rps{{workload="{name}"}})'}
                    async with session.get(url + "/api/v1/query", params=query) as response:
                        result = (await response.json())["data"]["result"]
                        return float(result[0]["value"][1]) if result else None

                external = f"http://{services[0].addresses['external_metrics']}"
                metric_path = "/apis/external.metrics.k8s.io/v1beta1/namespaces/ml/desired_replicas"

                async def served_replicas(name: str) -> int:
                    params = {"labelSelector": f"workload={name}"}
                    async with session.get(external + metric_path, params=params) as response:
                        if response.status != 200:
                            return 0
                        return int((await response.json())["items"][0]["value"])

                def replicas(name: str) -> int | None:
                    item = latest.get("ml", name)
                    return item.decision.replicas if item else None

                # Let every workload publish at the low load first (Prometheus needs about 5 s
                # to start scraping a new target).
                settle_until = time.perf_counter() + 30
                while any(replicas(n) != low for n in names):
                    if time.perf_counter() > settle_until:
                        raise SystemExit(f"did not settle at {low} replicas: {[replicas(n) for n in names]}")
                    await asyncio.sleep(0.05)
                for i, name in enumerate(names):
                    # Steps land at different phases of the 1 s scrape and tick: 0, 0.2, 0.4 s...
                    await asyncio.sleep(2.0 + 0.2 * i)
                    load[name] = HIGH_RPS
                    stepped = time.perf_counter()
                    prometheus_at = published_at = served_at = None
                    while prometheus_at is None or published_at is None or served_at is None:
                        if time.perf_counter() - stepped > STEP_DEADLINE_SECONDS:
                            raise SystemExit(
                                f"{name}: step not reached within {STEP_DEADLINE_SECONDS:g} s (prometheus"
                                f" {prometheus_at}, published {published_at}, served {served_at})"
                            )
                        if prometheus_at is None and await prometheus_value(name) == HIGH_RPS:
                            prometheus_at = time.perf_counter() - stepped
                        if published_at is None and (replicas(name) or 0) >= high:
                            published_at = time.perf_counter() - stepped
                        if served_at is None and await served_replicas(name) >= high:
                            served_at = time.perf_counter() - stepped
                        await asyncio.sleep(0.01)
                    served.append(served_at)
                    seen_by_prometheus.append(prometheus_at)
                    published.append(published_at)
            stop.set()
            await task
        finally:
            process.terminate()
            process.wait()
            await runner.cleanup()

    print(f"core: {label}; scrape 1 s, tick 1 s, step {LOW_RPS:g} -> {HIGH_RPS:g} rps, {args.runs} runs")
    print(f"{'reached':<13}{'median s':>10}{'max s':>8}{'runs':>30}")
    for name, values in (("prometheus", seen_by_prometheus), ("published", published), ("served", served)):
        runs = " ".join(f"{v:.2f}" for v in values)
        print(f"{name:<13}{statistics.median(values):>10.2f}{max(values):>8.2f}{runs:>30}")
    print(
        "published / prometheus (median): "
        f"{statistics.median(published) / statistics.median(seen_by_prometheus):.2f}"
    )
    verdict = "meets" if max(served) < 5.0 else "MISSES"
    print(f"slowest step reached the external metrics API in {max(served):.2f} s: {verdict} the 5 s target")


if __name__ == "__main__":
    asyncio.run(main())

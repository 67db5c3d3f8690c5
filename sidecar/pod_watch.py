"""Pod watches that teach the cold start: one per configured workload, following reloads."""

from __future__ import annotations

import asyncio
import logging

from kubernetes_asyncio import client

from sidecar.clock import Clock, sleep_unless_stopped
from sidecar.control_loop import ControlLoop
from sidecar.kubernetes_client import ColdStartTracker, KubernetesReader, watch_cold_starts
from sidecar.settings import WorkloadSettings

log = logging.getLogger(__name__)

WATCHER_SYNC_SECONDS = 30.0


async def supervise_pod_watchers(
    api: client.ApiClient,
    reader: KubernetesReader,
    loop: ControlLoop,
    tracker: ColdStartTracker,
    clock: Clock,
    stop: asyncio.Event,
) -> None:
    """One pod watch per configured workload, following settings reloads: a workload added
    gets a watch within `WATCHER_SYNC_SECONDS`, a removed one has its watch stopped."""
    watchers: dict[tuple[str, str], tuple[asyncio.Task[None], asyncio.Event]] = {}
    try:
        while True:
            wanted = {key: status.settings for key, status in loop.statuses().items()}
            for key in [k for k in watchers if k not in wanted]:
                watchers.pop(key)[1].set()
            for key, workload in wanted.items():
                if key not in watchers or watchers[key][0].done():
                    own_stop = asyncio.Event()
                    task = asyncio.create_task(
                        _watch_pods(api, reader, workload, tracker, own_stop),
                        name=f"pod watcher {key[0]}/{key[1]}",
                    )
                    watchers[key] = (task, own_stop)
            if await sleep_unless_stopped(clock, WATCHER_SYNC_SECONDS, stop):
                break
    finally:
        for task, own_stop in watchers.values():
            own_stop.set()
            task.cancel()
        await asyncio.gather(*(task for task, _ in watchers.values()), return_exceptions=True)


async def _watch_pods(
    api: client.ApiClient,
    reader: KubernetesReader,
    workload: WorkloadSettings,
    tracker: ColdStartTracker,
    stop: asyncio.Event,
) -> None:
    selector = await reader.pod_selector(workload.namespace, workload.target.kind, workload.target_name)
    if selector is None:
        # Retried by the supervisor at its next sync: the target may not exist yet.
        log.warning("no pod selector; cold start uses the default for now", extra={"workload": workload.name})
        return
    await watch_cold_starts(api, (workload.namespace, workload.name), selector, tracker, stop)

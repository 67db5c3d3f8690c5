"""Liveness and readiness of the sidecar, judged from what the loop last published.

Live (/healthz): the loop has ticked within three tick intervals, so a wedged loop gets the
container restarted. Ready (/readyz): at least one workload has a decision on a fresh load
reading; every workload's problem is listed either way. A Prometheus outage therefore shows here
(every signal age grows past `stale_after_seconds`) while the published decisions hold. One
workload's bad query does not: readiness takes the pod out of the Service, and with it every
workload's metric, so one workload must not cost the others theirs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from aiohttp import web

from autoscaler.observations import Signal
from sidecar.clock import Clock
from sidecar.control_loop import ControlLoop


@dataclass(frozen=True, slots=True)
class Health:
    ok: bool
    problems: tuple[str, ...]

    def response(self) -> web.Response:
        body = {"status": "ok" if self.ok else "unavailable", "problems": list(self.problems)}
        return web.Response(
            status=200 if self.ok else 503, text=json.dumps(body), content_type="application/json"
        )


def check_live(loop: ControlLoop, now: float, last_tick_at: float | None, started_at: float) -> Health:
    limit = 3 * loop.settings.tick_seconds
    since = now - (last_tick_at if last_tick_at is not None else started_at)
    if since > limit:
        return Health(False, (f"no tick for {since:.0f} s (limit {limit:.0f} s)",))
    return Health(True, ())


def check_ready(loop: ControlLoop, now: float) -> Health:
    problems = []
    healthy = 0
    statuses = loop.statuses()
    for (namespace, name), status in sorted(statuses.items()):
        where = f"{namespace}/{name}"
        load = status.readings.get(Signal.LOAD)
        found = len(problems)
        if status.published is None:
            problems.append(f"{where}: no decision yet")
        elif load is None:
            problems.append(f"{where}: no load reading yet")
        elif (age := load.age_seconds(now)) > (limit := status.policy.stale_after_seconds):
            problems.append(f"{where}: load signal is {age:.0f} s old (stale after {limit:g} s), holding")
        if status.last_error is not None and (failures := status.consecutive_failures):
            problems.append(f"{where}: {failures} failed ticks, last: {status.last_error}")
        healthy += len(problems) == found
    return Health(healthy > 0 or not statuses, tuple(problems))


class HealthRoutes:
    """/healthz and /readyz for an aiohttp app; `ticked(now)` is called after every tick."""

    def __init__(self, loop: ControlLoop, clock: Clock) -> None:
        self._loop = loop
        self._clock = clock
        self._started_at = clock.now()
        self.last_tick_at: float | None = None

    def ticked(self, at: float) -> None:
        self.last_tick_at = at

    def add_to(self, app: web.Application) -> None:
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)

    async def healthz(self, request: web.Request) -> web.Response:
        return check_live(self._loop, self._clock.now(), self.last_tick_at, self._started_at).response()

    async def readyz(self, request: web.Request) -> web.Response:
        return check_ready(self._loop, self._clock.now()).response()

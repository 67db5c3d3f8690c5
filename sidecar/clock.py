"""The one injectable clock: wall time in Unix seconds and a sleep that tests can fast-forward."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Unix time in seconds."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """Wall-clock time; sleeps on the event loop."""

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class AcceleratedClock:
    """Time that runs `speedup` times faster than the wall clock from `start` (Unix seconds):
    `serve --replay` uses it to play an hour of trace in a minute (speedup 60)."""

    def __init__(self, start: float, speedup: float) -> None:
        if speedup <= 0:
            raise ValueError(f"speedup={speedup!r} must be > 0")
        self._start = start
        self._speedup = speedup
        self._wall_start = time.monotonic()

    def now(self) -> float:
        return self._start + (time.monotonic() - self._wall_start) * self._speedup

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self._speedup)


async def sleep_unless_stopped(clock: Clock, seconds: float, stop: asyncio.Event) -> bool:
    """Sleep up to `seconds` on `clock`, waking at once when `stop` is set; returns whether it
    was. Every periodic task uses it, so SIGTERM never waits out a sleep."""
    sleeper = asyncio.ensure_future(clock.sleep(seconds))
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sleeper, stopper):
            task.cancel()
    return stop.is_set()

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


class SteppedClock:
    """Simulated time that moves only when the replay steps it, one control-loop tick at a time,
    so a replay ticks at exactly start, start + tick, ... however long each tick takes, and
    `replay` and `serve --replay` make the same decisions.

    `step(seconds)` advances time; with `speedup` it first waits until `seconds / speedup` wall
    seconds have passed since the previous step (`serve --replay` paces the demo), without it
    (`replay`) time jumps at once. `sleep` waits for simulated time, so the loop's other periodic
    tasks (settings watch, state saves) wake on the same timeline.
    """

    def __init__(self, start: float, speedup: float | None = None) -> None:
        if speedup is not None and not speedup > 0:
            raise ValueError(f"speedup={speedup!r} must be > 0")
        self._now = start
        self._speedup = speedup
        self._stepped = asyncio.Event()
        self._wall_mark = time.monotonic()

    def now(self) -> float:
        return self._now

    async def step(self, seconds: float) -> None:
        if self._speedup is not None:
            due = self._wall_mark + seconds / self._speedup
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            self._wall_mark = max(due, time.monotonic() - 1.0)  # a slow tick is not caught up later
        self._now += seconds
        stepped, self._stepped = self._stepped, asyncio.Event()
        stepped.set()

    async def sleep(self, seconds: float) -> None:
        until = self._now + max(0.0, seconds)
        while self._now < until:
            await self._stepped.wait()

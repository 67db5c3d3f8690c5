"""The running service's settings watcher: each good new file is applied, every bad one rejected.

A new file is read and validated in a worker thread, so a large or hostile file (the size and
alias caps in sidecar.settings bound the work) never stalls the event loop and with it the
servers. Whatever goes wrong with a new file, a validator's bug included, is one log line and the
running settings stay: a reload can never stop the service.
"""

from __future__ import annotations

import asyncio
import logging

from sidecar.clock import Clock, sleep_unless_stopped
from sidecar.control_loop import ControlLoop
from sidecar.settings import Settings, SettingsFile

log = logging.getLogger(__name__)

SETTINGS_POLL_SECONDS = 5.0
# Sections bound into clients, sockets and the state path at start: a reload cannot apply them.
RESTART_ONLY_SECTIONS = ("prometheus", "server", "kubernetes", "state", "log_format")


async def watch_settings(
    settings_file: SettingsFile,
    loop: ControlLoop,
    clock: Clock,
    stop: asyncio.Event,
    running: Settings | None = None,
) -> None:
    """Apply workloads, loop cadence and log level from each good new file. A change to a
    section in RESTART_ONLY_SECTIONS (compared with `running`, the settings served at start)
    is logged as waiting for a restart, so an edited Prometheus URL is not silently ignored."""
    while not await sleep_unless_stopped(clock, SETTINGS_POLL_SECONDS, stop):
        try:
            change = await asyncio.to_thread(settings_file.reload)
        except Exception as error:  # reload() reports bad content itself; this is anything else
            _reject(f"{type(error).__name__}: {error}")
            continue
        if change is None:
            continue
        if change.settings is None:
            _reject(change.error)
            continue
        try:
            loop.reconfigure(change.settings.workloads, change.settings.loop)
        except Exception as error:  # SettingsError from a policy check, or a bug: never fatal
            _reject(str(error) or type(error).__name__)
            continue
        logging.getLogger().setLevel(change.settings.log_level)
        log.info("settings reloaded", extra={"workloads": len(change.settings.workloads)})
        if running is not None:
            pending = [
                name
                for name in RESTART_ONLY_SECTIONS
                if getattr(change.settings, name) != getattr(running, name)
            ]
            if pending:
                log.warning("changed settings apply only after a restart", extra={"sections": pending})


def _reject(error: str | None) -> None:
    log.error("new settings rejected; the running settings stay", extra={"error": error})

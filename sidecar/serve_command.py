"""`predictive-autoscaler serve`: run the sidecar (the control loop and its servers).

`serve --config FILE` is the production form; `serve --replay TRACE` runs the same loop and
servers over a trace with a simulated cluster and an accelerated clock, no cluster needed.
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

from sidecar.cli import BUNDLED_TRACE
from sidecar.logs import configure_logging
from sidecar.settings import LogFormat, Settings, SettingsError, SettingsFile


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="settings YAML (a mounted ConfigMap); reloaded on change")
    parser.add_argument(
        "--replay",
        type=Path,
        nargs="?",
        const=BUNDLED_TRACE,
        metavar="TRACE",
        help="serve decisions for a timestamp_s,requests CSV (no TRACE: the bundled NASA trace)",
    )
    parser.add_argument(
        "--speedup",
        type=float,
        default=60.0,
        help="with --replay: trace seconds per wall second (default 60: an hour a minute)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if not (math.isfinite(args.speedup) and args.speedup > 0):
        # Exit 2 in the service's log format, as every other bad input to `serve` does.
        configure_logging(LogFormat.TEXT)
        logging.getLogger(__name__).error("serve: --speedup=%s must be a finite number > 0", args.speedup)
        return 2
    loaded = _checked_settings(args.config, args.replay)
    if loaded is None:
        return 2
    # The composition root imports every adapter, gRPC among them; a bad settings file is told
    # before they load, so its one line is the only line (gRPC's threads, stopped by the exit
    # under load, logged one of their own).
    from sidecar import main

    return main.run(*loaded, replay=args.replay, speedup=args.speedup)


def _checked_settings(path: Path | None, replay: Path | None) -> tuple[Settings, SettingsFile | None] | None:
    """The settings to serve, or None after logging in one line why there are none."""
    # Errors before the settings choose a format use the default one, not logging's bare format.
    configure_logging(LogFormat.TEXT)
    log = logging.getLogger("sidecar.main")
    try:
        settings_file = SettingsFile(path) if path else None
        settings = settings_file.load() if settings_file else Settings()
    except SettingsError as error:
        log.error("%s", error)
        return None
    if replay is None and not settings.workloads:
        if path is None:
            log.error("no workloads configured: give --config FILE, or --replay TRACE for a demo")
        else:
            fix = "add one under `workloads:` (deploy/examples/settings.yaml)"
            log.error("%s lists no workloads: %s", path, fix)
        return None
    return settings, settings_file

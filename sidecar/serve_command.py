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
from sidecar.settings import LogFormat


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
    from sidecar import main  # the composition root imports every adapter; only `serve` needs them

    return main.run(args.config, replay=args.replay, speedup=args.speedup)

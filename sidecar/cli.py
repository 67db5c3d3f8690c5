"""The `predictive-autoscaler` command: one subcommand per job, each registered by its own module.

Only the chosen subcommand's module is imported: the others pull in the simulator, pandas, the
Kubernetes client and aiohttp, seconds of imports that `--help` or `serve` has no use for.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

# name -> (the module whose register(parser) adds its arguments and `run`, the one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "backtest": ("sidecar.backtest_command", "score forecasters on a trace at pre-warming leads"),
    "export": ("sidecar.export_command", "write a workload's request rate from Prometheus as a trace file"),
    "replay": ("sidecar.replay_command", "replay a trace through every policy"),
    "serve": ("sidecar.serve_command", "run the sidecar: control loop, metrics APIs, /metrics"),
}
# The embedded default: replay the bundled trace and print the comparison table.
DEFAULT_COMMAND = "replay"
BUNDLED_TRACE = Path(__file__).resolve().parent / "traces" / "nasa-http-1995-jul-4d.csv"


def build_parser(command: str | None) -> argparse.ArgumentParser:
    """The parser with every subcommand listed and `command`'s arguments (None: none of them)."""
    parser = argparse.ArgumentParser(
        prog="predictive-autoscaler",
        description="Predictive autoscaler for ML inference on Kubernetes.",
    )
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        subparser = subcommands.add_parser(name, help=help_text)
        if name == command:
            importlib.import_module(module).register(subparser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(argv if argv is not None else sys.argv[1:])
    if not arguments:
        arguments = [DEFAULT_COMMAND]
    command = arguments[0] if arguments[0] in COMMANDS else None
    args = build_parser(command).parse_args(arguments)
    if args.command is None:
        args = build_parser(DEFAULT_COMMAND).parse_args([DEFAULT_COMMAND])
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())

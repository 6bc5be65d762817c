"""Every third-party module the shipped code imports is a distribution ``pyproject.toml`` declares by
name (not one that merely arrives with another), and the core layer's requirements are generated from
it, never kept by hand (issue 16 item 7).

GIVEN every ``import`` in ``layers/core/facegate`` and ``clients/python`` (at any depth: the lazy ones too)
WHEN each top-level module is mapped to the distribution that provides it THEN that distribution is a
run-time dependency or one of the extras; and ``scripts/layer_requirements.py --check`` passes.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
FIRST_PARTY = {"facegate", "facegate_sdk", "benchmarks"}


def _imported(root: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return found


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements += extra
    names = {re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", r).group(0) for r in requirements}  # type: ignore[union-attr]
    return {n.lower().replace("_", "-") for n in names}


def test_every_imported_module_is_declared_by_name() -> None:
    imports = {**_imported(ROOT / "layers" / "core" / "facegate"), **_imported(ROOT / "clients" / "python")}
    providers = packages_distributions()
    declared = _declared()
    undeclared = {}
    for module, where in sorted(imports.items()):
        if module in FIRST_PARTY or module in sys.stdlib_module_names or module == "__future__":
            continue
        distributions = {d.lower().replace("_", "-") for d in providers.get(module, [module])}
        if not distributions & declared:
            undeclared[module] = (sorted(distributions), sorted(where)[:3])
    assert undeclared == {}


def test_the_layer_requirements_are_generated_from_pyproject() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "layer_requirements.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr

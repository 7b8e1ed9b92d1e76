"""The shape of the monorepo, read from the imports: every deployable points down into core,
nothing points back or sideways, and the API stays free of the training and monitoring stacks.

Run on the source (ast), not by importing, so it holds for code paths no test executes.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "{{ cookiecutter.package }}_"
PACKAGES = {
    "core": ROOT / "packages/core/src",
    "training": ROOT / "packages/training/src",
    "registry": ROOT / "packages/registry/src",
    "batch": ROOT / "packages/batch/src",
    "api": ROOT / "packages/api/src",
    "monitoring": ROOT / "monitoring/src",
}
# Which of the project's own packages each one may import (besides itself).
ALLOWED = {name: {"core"} for name in PACKAGES} | {"core": set()}
# Third-party modules a package must never import, anywhere in its code.
FORBIDDEN = {
    "api": {"sklearn", "scipy", "pandas", "evidently", "dvc", "mlflow.pyfunc"},
    "core": {"evidently", "dvc"},
    "batch": {"sklearn", "evidently", "dvc"},
    "registry": {"sklearn", "evidently", "dvc"},
}


def imports(source: Path) -> list[tuple[str, bool, str]]:
    """(module, at module level?, file:line) for every import in the files under `source`."""
    found = []
    for path in sorted(source.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        top_level = set(map(id, _module_level(tree.body)))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            where = f"{path.relative_to(source.parent)}:{node.lineno}"
            found += [(name, id(node) in top_level, where) for name in names]
    return found


def _module_level(body: list[ast.stmt]) -> list[ast.stmt]:
    """Statements that run on import: the body, into if/try blocks, not TYPE_CHECKING ones."""
    statements = []
    for node in body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        statements.append(node)
        if isinstance(node, ast.If | ast.Try):
            for block in (node.body, node.orelse, getattr(node, "finalbody", [])):
                statements += _module_level(block)
            for handler in getattr(node, "handlers", []):
                statements += _module_level(handler.body)
    return statements


def own_package(module: str) -> str | None:
    if not module.startswith(PREFIX):
        return None
    return module.removeprefix(PREFIX).split(".")[0]


@pytest.mark.parametrize("package", PACKAGES)
def test_a_package_imports_only_core_of_the_project(package):
    wrong = [
        f"{where} imports {module}"
        for module, _, where in imports(PACKAGES[package])
        if own_package(module) not in (None, package, *ALLOWED[package])
    ]
    assert wrong == []


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_never_imports_what_its_deployable_does_not_ship(package):
    wrong = [
        f"{where} imports {module}"
        for module, _, where in imports(PACKAGES[package])
        if any(module == banned or module.startswith(f"{banned}.") for banned in FORBIDDEN[package])
    ]
    assert wrong == []


def test_core_imports_mlflow_only_when_it_is_used():
    wrong = [
        f"{where} imports {module} at module level"
        for module, top_level, where in imports(PACKAGES["core"])
        if top_level and module.split(".")[0] == "mlflow"
    ]
    assert wrong == []


def test_no_shipped_package_imports_the_benchmarks_or_the_tests():
    wrong = [
        f"{where} imports {module}"
        for source in PACKAGES.values()
        for module, _, where in imports(source)
        if module.split(".")[0] in ("benchmarks", "tests", "loadtest", "conftest")
    ]
    assert wrong == []


def test_the_checks_see_a_violation(tmp_path):
    """The reader finds imports at every depth, so a breach cannot hide in a function."""
    (tmp_path / "module.py").write_text(
        f"import os\nif True:\n    import mlflow\ndef f():\n    from {PREFIX}training import cli\n"
    )
    found = {(module, top) for module, top, _ in imports(tmp_path)}
    assert found == {("os", True), ("mlflow", True), (f"{PREFIX}training", False)}

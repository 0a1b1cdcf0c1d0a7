"""Package metadata: every runtime import is a declared dependency; the licence is PEP 639."""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
# Loaded only by pytest, through the pytest11 entry point.
PYTEST_ONLY = {ROOT / "mvactors" / "testing" / "pytest_plugin.py"}


def _module_level_imports(path: Path) -> set[str]:
    """Top-level names imported when the module loads (not inside functions or ImportError guards)."""
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
            elif isinstance(node, ast.If):
                if not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                guards_import_error = any(
                    isinstance(h.type, ast.Name) and h.type.id in {"ImportError", "ModuleNotFoundError"}
                    for h in node.handlers
                )
                if not guards_import_error:
                    visit(node.body)
            elif isinstance(node, ast.ClassDef):
                visit(node.body)

    visit(ast.parse(path.read_text(encoding="utf-8")).body)
    return found


def test_every_module_level_import_is_a_declared_dependency():
    declared = {Requirement(r).name.lower() for r in PYPROJECT["project"]["dependencies"]}
    dists = packages_distributions()
    missing: dict[str, set[str]] = {}
    for path in sorted((ROOT / "mvactors").rglob("*.py")):
        if path in PYTEST_ONLY:
            continue
        for name in _module_level_imports(path) - set(sys.stdlib_module_names) - {"mvactors"}:
            providers = {d.lower() for d in dists.get(name, [name])}
            # The cluster floor may use its extra (mvactors[redis]), the dashboard its own (mvactors[dashboard]);
            # `import mvactors` loads neither.
            extras = PYPROJECT["project"]["optional-dependencies"]
            extra = extras["redis"] if "cluster" in path.parts else extras["dashboard"] if "dashboard" in path.parts \
                else []
            if not providers & (declared | {Requirement(r).name.lower() for r in extra}):
                missing.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    assert not missing, f"imported at module level but not in [project] dependencies: {missing}"


def test_licence_metadata_is_an_spdx_expression_with_its_file():
    project = PYPROJECT["project"]
    assert project["license"] == "MIT"
    assert all((ROOT / f).is_file() for f in project["license-files"])
    assert not any(c.startswith("License ::") for c in project.get("classifiers", []))
    assert "setuptools>=77" in PYPROJECT["build-system"]["requires"]  # the first with PEP 639


def test_the_wheel_ships_the_wasm_engine_and_compiler_but_no_native_build():
    setuptools = PYPROJECT["tool"]["setuptools"]
    assert setuptools["cmdclass"]["build_py"] == "build_hook.BuildPy"
    assert set(setuptools["package-data"]["mvactors"]) >= {"vm/_engine/*.wasm", "_compiler/*.cjs"}
    assert "vm/_engine/*.so" in setuptools["exclude-package-data"]["mvactors"]
    manifest = (ROOT / "MANIFEST.in").read_text(encoding="utf-8")
    for needed in ("engine/build.py", "engine/bundle-compiler.mjs", "engine/package-lock.json", "graft engine/src"):
        assert needed in manifest

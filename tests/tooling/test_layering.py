"""The package's import rules (docs: /work/notes/interfaces.md, "Layering"), checked on the source with ``ast``.

Floors, lowest first: ground (errors.py, imports.py), vm/, actors/ and store/, cluster/, and the top
(the package's __init__, cli, compiler, metrics, __main__, testing/).  A module never imports a
higher floor, not even under TYPE_CHECKING or inside a function, and never reads an underscore
name defined in another folder (the modules of one folder share theirs).  testing/ may re-export
vm's native reference driver.  Across modules, code reads no underscore attribute of another
class's instances: ``obj._x`` is fine only where this module defines ``_x`` (``self``/``cls`` may
read their own, mixins included), bar the few exceptions KEPT names with their reasons.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "mvactors"

FLOORS = {"ground": 0, "vm": 1, "actors": 2, "store": 2, "cluster": 3, "top": 4}
TESTING_MAY_IMPORT = {"mvactors.vm._native"}  # the native reference driver, re-exported by testing/


def floor_of(module: str) -> str:
    parts = module.split(".")
    if parts[:1] != ["mvactors"]:
        raise ValueError(module)
    if len(parts) >= 2 and parts[1] in ("vm", "actors", "store", "cluster"):
        return parts[1]
    if len(parts) >= 2 and parts[1] in ("errors", "imports"):
        return "ground"
    return "top"


def folder_of(module: str, is_package: bool) -> str:
    """The package a module's file sits in (a package's __init__ sits in itself)."""
    return module if is_package else module.rpartition(".")[0]


def is_private(name: str) -> bool:
    """An underscore name (dunders are public protocol, not private)."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def module_name(path: Path, root: Path) -> tuple[str, bool]:
    """A file's dotted module name, and whether it is a package's __init__."""
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def violations(source: str, module: str, is_package: bool, modules: dict[str, bool]) -> list[str]:
    """Every breach of the rules in one module's source; ``modules`` maps the package's modules to is-package."""
    here_floor = FLOORS[floor_of(module)]
    here_folder = folder_of(module, is_package)
    found: list[str] = []
    foreign: dict[str, str] = {}  # local name -> what it names, imported from another folder

    def resolve(target: str, name: str | None) -> tuple[str, str]:
        """The module an import reaches, and the folder that defines what it imports."""
        full = f"{target}.{name}" if name is not None and f"{target}.{name}" in modules else target
        return full, folder_of(full, modules.get(full, False))

    def check(target: str, name: str | None, line: int) -> None:
        shown = f"{target}.{name}" if name else target
        full, owner = resolve(target, name)
        if FLOORS[floor_of(full)] > here_floor:
            found.append(f"{module}:{line} imports {shown} from a higher floor ({floor_of(full)})")
        if owner == here_folder or (module.startswith("mvactors.testing") and full in TESTING_MAY_IMPORT):
            return
        if any(is_private(p) for p in full.split(".")) or (name is not None and is_private(name)):
            found.append(f"{module}:{line} reads {shown}, private to another folder")

    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("mvactors"):
                    check(alias.name, None, node.lineno)
                    if resolve(alias.name, None)[1] != here_folder:
                        foreign[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("mvactors"):
                continue
            for alias in node.names:
                check(target, alias.name, node.lineno)
                if resolve(target, alias.name)[1] != here_folder:
                    foreign[alias.asname or alias.name] = f"{target}.{alias.name}"
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in foreign
                and is_private(node.attr)):
            found.append(f"{module}:{node.lineno} reads {node.value.id}.{node.attr}, private to "
                         f"{foreign[node.value.id]}")
    found += foreign_private_attributes(tree, module)
    return found


# Underscore names that are public protocol of the standard library's types, not anybody's privates.
STDLIB_PROTOCOL = {"_replace", "_asdict", "_fields", "_make", "_field_defaults"}
# The kept exceptions, each with its reason (tests/vm/test_vm_privacy.py holds vm/ to a stricter list):
KEPT = {
    # wasmtime-py's raw handles, which vm/_wasm.py (the only wasmtime importer) needs for its
    # unchecked calls; wasmtime-py has no public way to reach them.
    "mvactors.vm._wasm": {"_context", "_from_ptr"},
    # The trivial call's hot path reads its VM's flat fields: a method in between costs ~0.1 µs
    # of a ~1.7 µs call (bench/vm.py).  Its instance and memory view too (one class per engine,
    # not per instance: ~2.5 KiB per live VM).  _fastcall.c, its C version, reads the same fields.
    "mvactors.vm._calls": {"_slow", "_to_guest", "_trapped", "_call_result", "_inst", "_mem16",
                           "_call_address"},
    # VM.wake finishes the VM it has just made; _wake_refs is VM's own (from its Persistence mixin).
    "mvactors.vm.machine": {"_wake_refs"},
}


def defined_here(tree: ast.Module) -> set[str]:
    """Underscore attribute names this module defines: methods, class attributes, and ``x._name = ...`` stores."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.attr)
    for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
        for stmt in cls.body:
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target] if isinstance(
                stmt, ast.AnnAssign) else []
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return {name for name in names if is_private(name)}


def foreign_private_attributes(tree: ast.Module, module: str) -> list[str]:
    """Reads of ``obj._name`` where another module defines ``_name``: another class's instance privates.

    ``self``/``cls`` may read any of their own names (a mixin and its class are one class), and
    imported modules are the folder rule's business, checked above.
    """
    mine = defined_here(tree)
    imported = {alias.asname or alias.name.partition(".")[0] for node in ast.walk(tree)
                if isinstance(node, (ast.Import, ast.ImportFrom)) for alias in node.names}
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load) and is_private(node.attr)):
            continue
        owner = node.value
        if isinstance(owner, ast.Name) and (owner.id in ("self", "cls") or owner.id in imported):
            continue
        if isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "super":
            continue
        if node.attr in mine or node.attr in STDLIB_PROTOCOL or node.attr in KEPT.get(module, ()):
            continue
        found.append(f"{module}:{node.lineno} reads .{node.attr} of another class's instance "
                     f"({ast.unparse(owner)}), which another module defines")
    return found


def package_modules() -> dict[str, tuple[Path, bool]]:
    """Every module of the package: name -> (file, is a package)."""
    result = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "_engine" in path.parts:
            continue
        name, is_package = module_name(path, PACKAGE)
        result[name] = (path, is_package)
    return result


def test_no_floor_imports_a_higher_one_or_another_folders_private_names():
    modules = package_modules()
    kinds = {name: is_package for name, (_, is_package) in modules.items()}
    found = [v for name, (path, is_package) in modules.items()
             for v in violations(path.read_text(), name, is_package, kinds)]
    assert found == []


MODULES = {"mvactors": True, "mvactors.vm": True, "mvactors.actors": True, "mvactors.store": True,
           "mvactors.cluster": True, "mvactors.vm.machine": False, "mvactors.vm._wasm": False,
           "mvactors.actors.cell": False, "mvactors.actors._timers": False, "mvactors.errors": False,
           "mvactors.cluster.worker": False, "mvactors.store.base": False}


@pytest.mark.parametrize(("module", "source", "expected"), [
    ("mvactors.vm.machine", "from ..actors import Runtime", "higher floor"),
    ("mvactors.vm.machine", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..actors.cell import Cell",
     "higher floor"),
    ("mvactors.errors", "def f():\n    import mvactors.vm", "higher floor"),
    ("mvactors.actors.cell", "from ..cluster import worker", "higher floor"),
    ("mvactors.actors.cell", "from ..vm import _wasm", "private"),
    ("mvactors.actors.cell", "from ..vm._wasm import Instance", "private"),
    ("mvactors.actors.cell", "from ..vm.machine import _pool", "private"),
    ("mvactors.actors.cell", "from ..vm import machine\nmachine._pool.clear()", "private"),
    ("mvactors.cluster.worker", "import mvactors.actors._timers", "private"),
    ("mvactors.actors.cell", "def f(actor):\n    return actor._cell", "another class's instance"),
    ("mvactors.actors.cell", "class A:\n    def f(self):\n        return self.runtime._schedule", "another class's"),
])
def test_the_checker_catches_each_kind_of_breach(module, source, expected):
    found = violations(source, module, False, MODULES)
    assert len(found) == 1 and expected in found[0], found


@pytest.mark.parametrize(("module", "source"), [
    ("mvactors.actors.cell", "from ._timers import REFILL\nfrom . import _timers\n_timers.x"),
    ("mvactors.actors.cell", "from ..vm import VM, machine\nfrom ..errors import MicroviumError\nVM.__name__"),
    ("mvactors.cluster.worker", "from ..actors import Runtime\nfrom ..store import base"),
    ("mvactors.vm.machine", "from ..imports import AsyncImport\nimport anyio\nanyio._private"),
    ("mvactors.actors.cell", "class A:\n    _x = 1\n    def f(self, other):\n        return self._y, other._x"),
    ("mvactors.actors.cell", "class B:\n    def __init__(self):\n        self._n = 0\n    def same(self, o):\n"
                             "        return o._n == self._n and super()._z and o._replace()"),
])
def test_the_checker_allows_what_the_rules_allow(module, source):
    assert violations(source, module, False, MODULES) == []


def test_the_core_imports_without_redis_and_the_cluster_names_say_what_to_install():
    script = """
import sys
sys.modules["redis"] = None  # as if redis-py were not installed
import mvactors
assert "mvactors.cluster" not in sys.modules
try:
    mvactors.connect
except ImportError as exc:
    print(exc)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "pip install 'mvactors[redis]'" in done.stdout

"""The wheel's build step: build the WebAssembly engine and bundle the Microvium compiler.

setuptools runs ``BuildPy`` (``[tool.setuptools.cmdclass]`` in pyproject.toml) for every
wheel, including one built from the sdist, so ``python -m build`` and ``pip install <sdist>``
give an install with ``mvactors/vm/_engine/mvx.wasm`` and ``mvactors/_compiler/microvium.cjs``.
Editable installs skip it: ``./dev setup`` builds the engine in place and the dev checkout
compiles with engine/node_modules.  Needs npm (fetches the pinned microvium and esbuild) and
node; the WebAssembly toolchain is the pinned ziglang wheel from ``build-system.requires``.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
ENGINE = ROOT / "engine"
BUNDLE = ROOT / "mvactors" / "_compiler" / "microvium.cjs"


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        sys.exit(f"building mvactors needs {name} on PATH (it fetches and bundles the pinned Microvium compiler)")
    return found


def build_engine_and_compiler() -> None:
    """engine/build.py --wasm-only, then the one-file compiler bundle."""
    if not (ENGINE / "node_modules" / ".bin" / "esbuild").exists():
        # A checkout set up before esbuild was pinned has microvium but not the bundler.
        subprocess.run([_tool("npm"), "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=ENGINE, check=True)
    subprocess.run([sys.executable, str(ENGINE / "build.py"), "--wasm-only"], check=True)
    BUNDLE.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([_tool("node"), str(ENGINE / "bundle-compiler.mjs"), str(BUNDLE)], check=True)


class BuildPy(build_py):
    """build_py that first produces the engine and compiler files the package data names."""

    def run(self) -> None:
        if not self.editable_mode:
            build_engine_and_compiler()
            # The package-data file list may have been computed before the files existed.
            self.__dict__.pop("data_files", None)
        super().run()


# ---- the optional C extension (setup.py): zig for manylinux ----
#
# On Linux (x86-64, aarch64) the pinned ``ziglang`` wheel from ``build-system.requires``
# compiles mvactors/vm/_fastcall.c against glibc 2.17 and the wheel is tagged
# ``manylinux_2_17``: the extension needs no libc symbol at all (it calls only CPython, and
# wasmtime through a function pointer), so it loads on any glibc Linux.  If zig fails, the
# system compiler builds it and the wheel keeps the plain ``linux_*`` tag.

_ZIG_TARGETS = {"x86_64": "x86_64-linux-gnu.2.17", "aarch64": "aarch64-linux-gnu.2.17"}
_built_by_zig: list[str] = []  # extension names zig compiled (the wheel's tag depends on it)


def _zig_target() -> str | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ziglang  # noqa: F401  - only to know that `python -m ziglang` works
    except ImportError:
        return None
    return _ZIG_TARGETS.get(platform.machine())


class BuildExt(build_ext):
    """build_ext with zig cc for the manylinux target, falling back to the system compiler."""

    def build_extension(self, ext: Any) -> None:
        target = _zig_target()
        if target is not None:
            saved = {name: getattr(self.compiler, name) for name in ("compiler_so", "linker_so")}
            zig = [sys.executable, "-m", "ziglang", "cc", "-target", target]
            self.compiler.set_executables(compiler_so=[*zig, "-O2", "-fPIC", "-Wall"], linker_so=[*zig, "-shared"])
            try:
                super().build_extension(ext)
                _built_by_zig.append(ext.name)
                return
            except Exception as exc:  # a broken zig install must not cost the user the extension
                print(f"mvactors: zig cc could not build {ext.name} ({exc}); trying the system C compiler")
                self.compiler.set_executables(**saved)
        super().build_extension(ext)


class BdistWheel(bdist_wheel):
    """Tags the wheel manylinux_2_17 when zig built its extension against glibc 2.17."""

    def get_tag(self) -> tuple[str, str, str]:
        impl, abi, plat = super().get_tag()
        if _built_by_zig and plat.startswith("linux_"):
            plat = "manylinux_2_17_" + plat.removeprefix("linux_")
        return impl, abi, plat

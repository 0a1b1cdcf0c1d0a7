"""``compile``: turn a guest script into a snapshot with the pinned Microvium compiler."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .errors import CompileError

_REPO_CLI = Path(__file__).resolve().parent.parent / "engine" / "node_modules" / ".bin" / "microvium"


def compiler_path() -> str:
    """Where the Microvium CLI is: $MVACTORS_MICROVIUM, the source tree's engine/, or PATH."""
    configured = os.environ.get("MVACTORS_MICROVIUM")
    if configured:
        return configured
    if _REPO_CLI.exists():
        return str(_REPO_CLI)
    found = shutil.which("microvium")
    if found:
        return found
    raise CompileError(
        "the Microvium compiler is not installed; run `python engine/build.py` "
        "(it installs the pinned microvium@8.0.0 into engine/node_modules) or set MVACTORS_MICROVIUM"
    )


def compile(source_or_path: str | os.PathLike[str]) -> bytes:
    """Compile a guest script (source text, or a path to a .js/.mjs file) to snapshot bytes.

    Raises CompileError with the compiler's message when the script is rejected.
    """
    if isinstance(source_or_path, os.PathLike) or (
        isinstance(source_or_path, str)
        and "\n" not in source_or_path
        and source_or_path.endswith((".js", ".mjs"))
        and Path(source_or_path).is_file()
    ):
        path = Path(source_or_path)
        return _compile_text(path.read_text(encoding="utf-8"), path.name)
    return _compile_text(str(source_or_path), "script.mjs")


@functools.lru_cache(maxsize=256)
def _compile_text(source: str, name: str) -> bytes:
    cli = compiler_path()
    with tempfile.TemporaryDirectory(prefix="mvactors-compile-") as tmp:
        script = Path(tmp) / (name if name.endswith((".js", ".mjs")) else name + ".mjs")
        script.write_text(source, encoding="utf-8")
        output = Path(tmp) / "out.mvm-bc"
        proc = subprocess.run(
            [cli, str(script), "--snapshot", str(output)],
            cwd=tmp,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if proc.returncode != 0 or not output.exists():
            detail = (proc.stderr or proc.stdout).strip().replace(tmp + os.sep, "")
            raise CompileError(f"microvium could not compile {name}: {detail}")
        return output.read_bytes()

"""pytest fixtures for testing guest scripts (loaded through the ``pytest11`` entry point).

Installing mvactors makes these fixtures available in any pytest run::

    def test_counter(mvactors_vm):
        vm = mvactors_vm("counter.js")           # next to this test file; compiled once, cached
        assert vm.exports[1]() == 1

    @pytest.mark.anyio
    async def test_device(mvactors_runtime, mvactors_compile):
        actor = await mvactors_runtime.spawn(mvactors_compile("device.js"), imports={...})
        assert await actor.call(2) == "idle"

* ``mvactors_compile(script)``: snapshot bytes of a script path (relative paths resolve next to
  the test file, then from the current directory) or of source text, cached across runs in
  pytest's cache directory (``.pytest_cache``; ``pytest --cache-clear`` empties it).
* ``mvactors_vm(script_or_snapshot, imports=None, **restore_kwargs)``: a restored ``VM``,
  released when the test ends.
* ``mvactors_runtime``: a ``Runtime(clock="virtual")`` entered for the test (needs an async
  test: ``@pytest.mark.anyio``, with anyio's own plugin); timers jump, so sleeps cost nothing.
* ``mvactors_runtime_options``: override it to pass other ``Runtime`` arguments.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from ..actors import Runtime
from ..compiler import compile as compile_script
from ..vm import VM

Compile = Callable[["str | os.PathLike[str]"], bytes]

_SCRIPT_SUFFIXES = (".js", ".mjs")
# A script that imports others depends on more than its own text; those are compiled fresh.
_IMPORTS = re.compile(r"^\s*import\b", re.M)
# Bumped when the compiler pin changes, so cached snapshots never outlive their compiler.
_COMPILER = "microvium@8.0.0"


def _resolve(script: str | os.PathLike[str], base: Path) -> Path | None:
    """The file a script argument names, or None when it is source text."""
    if isinstance(script, str) and ("\n" in script or not script.endswith(_SCRIPT_SUFFIXES)):
        return None
    path = Path(script)
    if not path.is_absolute() and (base / path).is_file():
        return base / path
    return path


@pytest.fixture
def mvactors_compile(request: pytest.FixtureRequest) -> Compile:
    """``mvactors_compile(script)``: compiled snapshot bytes, cached in pytest's cache directory."""
    cache_dir = request.config.cache.mkdir("mvactors-snapshots") if request.config.cache else None
    base = request.path.parent

    def compile_cached(script: str | os.PathLike[str]) -> bytes:
        path = _resolve(script, base)
        if path is not None:
            if not path.is_file():
                raise FileNotFoundError(2, "no such guest script", str(path))
            text = path.read_text(encoding="utf-8")
            if _IMPORTS.search(text):
                return compile_script(path)
        elif isinstance(script, str):
            text = script
        else:
            return compile_script(script)  # raises the TypeError naming the type
        if cache_dir is None:
            return compile_script(path if path is not None else text)
        key = hashlib.sha256(f"{_COMPILER}\0{text}".encode()).hexdigest()
        cached = Path(cache_dir) / f"{key}.mvm-bc"
        try:
            return cached.read_bytes()
        except FileNotFoundError:
            pass
        data = compile_script(path if path is not None else text)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, cached)  # atomic: parallel workers never read half a snapshot
        return data

    return compile_cached


@pytest.fixture
def mvactors_vm(mvactors_compile: Compile) -> Iterator[Callable[..., VM]]:
    """``mvactors_vm(script_or_snapshot, imports=None, **kwargs)``: a VM released after the test."""
    with ExitStack() as stack:

        def restore(script_or_snapshot: str | os.PathLike[str] | bytes, imports: Any = None, **kwargs: Any) -> VM:
            if isinstance(script_or_snapshot, bytes | bytearray | memoryview):
                data = bytes(script_or_snapshot)
            else:
                data = mvactors_compile(script_or_snapshot)
            return stack.enter_context(VM.restore(data, imports or {}, **kwargs))

        yield restore


@pytest.fixture
def mvactors_runtime_options() -> dict[str, Any]:
    """Keyword arguments for the ``mvactors_runtime`` fixture's ``Runtime`` (override to change)."""
    return {"clock": "virtual"}


@pytest.fixture
async def mvactors_runtime(mvactors_runtime_options: dict[str, Any]) -> AsyncIterator[Runtime]:
    """A ``Runtime`` on a virtual clock, open for the test and closed after it."""
    async with Runtime(**mvactors_runtime_options) as runtime:
        yield runtime

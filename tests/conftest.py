"""Shared fixtures: compiled guest snapshots (cached on disk), VM factories, anyio backends."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import mvactors
from mvactors.compiler import compiler_command

TESTS_DIR = Path(__file__).resolve().parent
GUEST_DIR = TESTS_DIR / "guest"
CACHE_DIR = TESTS_DIR / ".snapshot-cache"
# The compiler's output changes with its patches: a cached snapshot is keyed by them too.
_COMPILER_PATCHES = TESTS_DIR.parent / "engine" / "compiler-patches.cjs"


def _cache_key(source: str) -> str:
    h = hashlib.sha256(source.encode("utf-8"))
    if _COMPILER_PATCHES.is_file():
        h.update(_COMPILER_PATCHES.read_bytes())
    return h.hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def guest_source(name: str) -> str:
    """The text of tests/guest/<name>.js."""
    return (GUEST_DIR / f"{name}.js").read_text(encoding="utf-8")


def compile_source(source: str) -> bytes:
    """Compile guest source text with mvactors.compile, cached under tests/.snapshot-cache/."""
    path = CACHE_DIR / f"{_cache_key(source)}.mvm-bc"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    data = mvactors.compile(source)
    _write_atomic(path, data)
    return data


def compile_guest(name: str) -> bytes:
    """The snapshot of tests/guest/<name>.js."""
    return compile_source(guest_source(name))


def disassemble(source: str) -> str:
    """The compiler's --output-disassembly text for ``source`` (cached like snapshots)."""
    path = CACHE_DIR / f"{_cache_key(source)}.disassembly"
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        pass
    with tempfile.TemporaryDirectory(prefix="mvactors-tests-") as tmp:
        script = Path(tmp) / "script.mjs"
        script.write_text(source, encoding="utf-8")
        subprocess.run(
            [*compiler_command(), str(script), "--snapshot", str(Path(tmp) / "out.mvm-bc"), "--output-disassembly"],
            cwd=tmp,
            check=True,
            capture_output=True,
            timeout=120,
        )
        text = (Path(tmp) / "out.mvm-bc.disassembly").read_text(encoding="utf-8")
    _write_atomic(path, text.encode("utf-8"))
    return text


def function_instruction_addresses(disassembly: str, function_name: str) -> list[int]:
    """Bytecode addresses of the instructions of ``function_name`` in a disassembly listing.

    Listing lines look like ``0030       1             LoadArg(index 1)`` (address, size, text);
    section and block headers carry a ``-`` marker, function metadata has size 0.
    """
    addresses: list[int] = []
    inside = False
    for line in disassembly.splitlines():
        m = re.match(r"^([0-9a-f]{4})\s+([0-9a-f]+)\s+(-\s+)?(.*)$", line)
        if not m:
            continue
        address, size, marker, text = int(m.group(1), 16), int(m.group(2), 16), m.group(3), m.group(4).strip()
        if marker:
            if text == f"# Function {function_name}":
                inside = True
            elif not text.startswith("# Block") and inside:
                break
            continue
        if inside and (text.startswith("Header [") or text == "<unused>"):
            break  # padding or the next allocation's header
        if inside and size > 0:
            addresses.append(address)
    return addresses


@pytest.fixture(scope="session")
def snapshot() -> Callable[[str], bytes]:
    """``snapshot("hello")`` -> the compiled bytes of tests/guest/hello.js."""
    return compile_guest


@pytest.fixture(scope="session")
def compile_js() -> Callable[[str], bytes]:
    """``compile_js(source)`` -> compiled bytes of inline guest source (cached)."""
    return compile_source


@pytest.fixture
def make_vm() -> Iterator[Callable[..., mvactors.VM]]:
    """``make_vm("hello", imports={...})``: restore a guest snapshot; the VMs are closed after the test."""
    stack = contextlib.ExitStack()

    def make(name_or_snapshot: str | bytes, imports: dict[int, Any] | None = None, **kwargs: Any) -> mvactors.VM:
        data = compile_guest(name_or_snapshot) if isinstance(name_or_snapshot, str) else name_or_snapshot
        vm = mvactors.VM.restore(data, imports=imports or {}, **kwargs)
        stack.enter_context(vm)  # `with vm:` semantics: released after the test
        return vm

    with stack:
        yield make


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def rt_actor(snapshot: Any) -> bytes:
    """The runtime suites' guest (tests/guest/rt_actor.js)."""
    return snapshot("rt_actor")  # type: ignore[no-any-return]


@pytest.fixture
def host() -> Any:
    """The runtime suites' recording host (modules with their own ``host`` fixture override it)."""
    from runtime_support import Host

    return Host()

"""The glue's ABI is written once (mvactors/vm/_abi.py): glue.c and the built engines must agree with it.

The build generates mvx_abi.h from _abi.py and asserts the engine's own
constants at compile time; these tests catch what the compiler cannot: a
dispatcher case or layout index added on one side only, and an engine built
from another version of the table (the wasm module carries the table's digest).
"""

from __future__ import annotations

import ctypes
import re
from pathlib import Path

import pytest

from mvactors import errors
from mvactors.vm import _abi, _wasm

ROOT = Path(__file__).resolve().parents[2]
GLUE = (ROOT / "engine" / "src" / "glue.c").read_text(encoding="utf-8")
MICROVIUM_H = ROOT / "engine" / "node_modules" / "microvium" / "dist-c" / "microvium.h"


def switch_cases(function: str) -> list[str]:
    """The case labels of the switch in glue.c's ``function``."""
    start = GLUE.index(function + "(")
    body = GLUE[start:GLUE.index("\n}\n", start)]
    return re.findall(r"case\s+([^:]+):", body)


def test_the_op_dispatcher_handles_exactly_the_ops_of_the_table() -> None:
    cases = switch_cases("int32_t mvx_op")
    assert cases == [f"MVX_OP_{name}" for name in _abi.constants(_abi.Op)]


def test_the_layout_answers_exactly_the_fields_of_the_table() -> None:
    cases = switch_cases("uintptr_t mvx_layout")
    assert cases == [f"MVX_L_{name}" for name in _abi.constants(_abi.Field)]


def test_the_table_has_no_two_names_for_one_number() -> None:
    for table in _abi.C_TABLES.values():
        values = list(_abi.constants(table).values())
        assert sorted(values) == list(range(len(values))), table.__name__


@pytest.mark.parametrize("name", ["MAX_HANDLES", "MAX_ARGS", "MAX_IMPORTS", "SCRATCH_SIZE", "ROM_SIZE"])
def test_the_built_wasm_engine_has_the_tables_limits(name: str) -> None:
    instance = _wasm.Instance()
    try:
        assert instance.layout_value(getattr(_abi.Field, name)) == getattr(_abi, name)
    finally:
        instance.close()


def test_the_built_native_engine_has_the_tables_limits() -> None:
    try:
        path = _wasm.native_library_path()
    except _wasm.EngineMissing:
        pytest.skip("native reference engine not built")
    layout = ctypes.CDLL(str(path)).mvx_layout
    layout.restype, layout.argtypes = ctypes.c_size_t, [ctypes.c_int32]
    for name in ("MAX_HANDLES", "MAX_ARGS", "MAX_IMPORTS", "SCRATCH_SIZE", "ROM_SIZE"):
        assert layout(getattr(_abi.Field, name)) == getattr(_abi, name), name


def test_the_built_wasm_engine_carries_the_tables_digest() -> None:
    assert _abi.digest_in(_wasm.WASM_PATH.read_bytes()) == _abi.digest()


def test_the_digest_follows_every_table() -> None:
    before = _abi.digest()
    original = _abi.Field.GAS_OFFSET
    try:
        _abi.Field.GAS_OFFSET = original + 1
        assert _abi.digest() != before
    finally:
        _abi.Field.GAS_OFFSET = original
    assert _abi.digest() == before


@pytest.mark.parametrize("stamp", ["0" * 64, None], ids=["other digest", "no digest"])
def test_a_wasm_engine_built_from_another_table_is_refused_as_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stamp: str | None
) -> None:
    built = _wasm.WASM_PATH.read_bytes()
    unstamped = built[:-len(_abi.with_digest(b"", _abi.digest()))]  # the build appends the section last
    assert _abi.with_digest(unstamped, _abi.digest()) == built
    stale = tmp_path / "mvx.wasm"
    stale.write_bytes(unstamped if stamp is None else _abi.with_digest(unstamped, stamp))
    assert _abi.digest_in(stale.read_bytes()) == stamp
    monkeypatch.setattr(_wasm, "WASM_PATH", stale)
    with pytest.raises(_wasm.EngineMissing, match=r"is stale: .*rebuild it: build it with `python engine/build.py`"):
        _wasm.WasmEngine()


def test_wasm_memory_is_the_size_the_table_says() -> None:
    instance = _wasm.Instance()
    try:
        assert len(instance.mem16) * 2 == _abi.WASM_MEMORY_BYTES
    finally:
        instance.close()


@pytest.mark.skipif(not MICROVIUM_H.exists(), reason="microvium.h is fetched by engine/build.py")
def test_error_names_follow_the_engines_error_enum() -> None:
    header = MICROVIUM_H.read_text(encoding="utf-8")
    enum = header[header.index("typedef enum mvm_TeError"):]
    enum = re.sub(r"/\*.*?\*/|//[^\n]*", "", enum[:enum.index("}")], flags=re.DOTALL)
    names = re.findall(r"\b(MVM_E_\w+)", enum)
    assert tuple(names) == errors.ERROR_NAMES

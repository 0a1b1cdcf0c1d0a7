"""Robustness of the engine build and its glue (issue 7, findings 1-3).

Each test reproduces a finding of the fuzz campaign: it failed (wrong value,
hang or memory fault) before the fix it names.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import pytest

import mvactors
from mvactors import VMUnusable

REENTRANT_JS = """
const host = vmImport(1);
function down(n) { return host(n); }
function plusHost(n) { return host(n) + 1; }
vmExport(1, down);
vmExport(2, plusHost);
"""

BYTES_JS = """
let store = undefined;
vmExport(1, (v) => { store = v; return 0; });
vmExport(2, () => store);
vmExport(3, (n) => { store = [Microvium.newUint8Array(0), Microvium.newUint8Array(n), { k: 'v' }]; return 0; });
vmExport(4, () => { let junk = []; for (let i = 0; i < 60; i++) junk.push({ i: i }); return junk.length; });
vmExport(5, () => store[0] === store[3]);
"""

COMPILED_EMPTY_JS = """
const empty = Microvium.newUint8Array(0);
const kept = [empty, 'abc' + 1, empty];
vmExport(1, () => kept);
vmExport(2, () => { let junk = []; for (let i = 0; i < 60; i++) junk.push({ i: i }); return kept[0] === kept[2]; });
"""

CLOSE_JS = """
const host = vmImport(1);
let count = 0;
vmExport(1, () => { const o = { a: [1, 2, 3] }; host(0); count++; return o.a[2] + count; });
vmExport(2, () => { let s = 0; for (let i = 0; i < 100; i++) { s += [i, i][1]; } return s; });
"""


# ---- finding 1: re-entrant host calls keep their own arguments and result ----


def test_reentrant_host_call_returns_its_own_result(compile_js):
    def host(n: int) -> Any:
        if n == 0:
            return "bottom"
        inner = vm.exports[1](n - 1)  # guest -> host -> guest -> host ...
        return f"{n}:{inner}"

    vm = mvactors.VM.restore(compile_js(REENTRANT_JS), {1: host})
    with vm:
        assert vm.exports[1](0) == "bottom"
        assert vm.exports[1](1) == "1:bottom"
        assert vm.exports[1](4) == "4:3:2:1:bottom"


def test_reentrant_numeric_result_reaches_the_guest(compile_js):
    def host(n: int) -> int:
        if n >= 3:
            return 2100
        vm.exports[2](n + 1)  # the nested call's own result is discarded
        return 1000 * n

    vm = mvactors.VM.restore(compile_js(REENTRANT_JS), {1: host})
    with vm:
        assert vm.exports[2](3) == 2101
        assert vm.exports[2](1) == 1001  # outer level sees 1000, not the nested 2100 or 2000


# ---- finding 2: closing a VM inside its own host call ----


def test_closing_a_vm_inside_its_host_call_spares_the_next_vm(compile_js):
    data = compile_js(CLOSE_JS)
    made: list[mvactors.VM] = []

    def host(_n: int) -> None:
        vm.close()
        other = mvactors.VM.restore(data, {1: lambda n: None})
        made.append(other)
        assert other.exports[2]() == 4950

    vm = mvactors.VM.restore(data, {1: host})
    with pytest.raises(VMUnusable, match="closed by a host function"):
        vm.exports[1]()
    (other,) = made
    with other:
        for i in range(1, 6):
            assert other.exports[2]() == 4950
            assert other.exports[1]() == 3 + i
    # and a VM restored now still computes correctly (the closed one's instance drained)
    with mvactors.VM.restore(data, {1: lambda n: None}) as fresh:
        assert fresh.exports[1]() == 4
        assert fresh.exports[2]() == 4950


# ---- finding 3: zero-size Uint8Arrays and the copying GC ----


@pytest.mark.parametrize("squeeze", [False, True])
@pytest.mark.parametrize("value", [{"a": b"", "b": b"xy"}, [b"", b"xy"], [b"", b"", {"k": b""}, b"z"]])
def test_empty_bytes_survive_gc(compile_js, value, squeeze):
    with mvactors.VM.restore(compile_js(BYTES_JS)) as vm:
        vm.exports[1](value)
        vm.exports[4]()
        vm.run_gc(squeeze)
        assert vm.exports[2]().to_python() == value
        vm.run_gc(squeeze)
        assert vm.exports[2]().to_python() == value
        again = mvactors.VM.restore(vm.create_snapshot())
        with again:
            again.run_gc(squeeze)
            assert again.exports[2]().to_python() == value


def test_guest_made_empty_uint8array_survives_gc(compile_js):
    with mvactors.VM.restore(compile_js(BYTES_JS)) as vm:
        vm.exports[3](2)
        for squeeze in (False, True, False):
            vm.exports[4]()
            vm.run_gc(squeeze)
            assert vm.exports[2]().to_python() == [b"", b"\x00\x00", {"k": "v"}]


def test_compiled_empty_uint8array_survives_gc(compile_js):
    with mvactors.VM.restore(compile_js(COMPILED_EMPTY_JS)) as vm:
        for squeeze in (False, True, False):
            vm.exports[2]()
            vm.run_gc(squeeze)
            assert vm.exports[1]().to_python() == [b"", "abc1", b""]


def test_glue_allocator_stops_on_a_zero_size_free_block():
    # A free block followed by a zero-size header (something overwrote it): the
    # allocator's merge loop used to spin forever.  Run in a child with a timeout.
    script = textwrap.dedent("""
        import ctypes, mvactors
        from mvactors.errors import VMUnusable
        vm = mvactors.VM.restore(mvactors.compile('vmExport(1, (n) => [n, n, n]);'))
        page = vm._base + vm._layout.page
        offset = 4
        while True:  # the first free block of the glue's RAM page
            header = ctypes.c_uint32.from_address(page + offset)
            if not header.value & 1 and header.value >= 64:
                break
            offset += header.value & ~3
        header.value = 8
        ctypes.c_uint32.from_address(page + offset + 8).value = 0
        try:
            vm.exports[1](1)
            vm.run_gc()
            print("no error")
        except VMUnusable as exc:
            print("unusable", exc.code)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "unusable MVM_E_HEAP_CORRUPT", out.stderr[-2000:]


# ---- finding 7: memory statistics are true figures ----

STATS_JS = """
let objs = [];
let extra = 'x';
vmExport(1, (n) => { for (let i = 0; i < n; i++) objs.push({ v: i, s: 'k' + i }); return objs.length; });
"""


@pytest.mark.parametrize("squeeze", [False, True])
@pytest.mark.parametrize("count", [0, 10, 96, 102, 300])
def test_memory_stats_are_true_figures(compile_js, count, squeeze):
    from mvactors.testing import NativeVM, native_available

    data = compile_js(STATS_JS)
    offsets = [int.from_bytes(data[12 + 2 * i:14 + 2 * i], "little") for i in range(8)]
    globals_size = offsets[7] - offsets[6]  # BCS_GLOBALS runs up to BCS_HEAP
    with mvactors.VM.restore(data) as vm:
        vm.exports[1](count)
        vm.run_gc(squeeze)
        stats = vm.get_memory_stats()
        assert stats.global_variables_size == globals_size
        assert stats.virtual_heap_used <= stats.virtual_heap_allocated_capacity < 0x8000
        assert stats.virtual_heap_used <= stats.virtual_heap_high_water_mark
        parts = (stats.core_size + stats.import_table_size + stats.global_variables_size + stats.registers_size
                 + stats.stack_allocated_capacity + stats.virtual_heap_allocated_capacity)
        assert parts <= stats.total_size <= parts + 16 * stats.fragment_count  # + bucket headers
        if native_available():
            with NativeVM.restore(data) as native:
                native.call(1, count)
                native.run_gc(squeeze)
                ref = native.memory_stats()
            # core size and bucket overheads differ with the pointer width; the rest must match
            assert (stats.fragment_count, stats.import_table_size, stats.global_variables_size,
                    stats.virtual_heap_used, stats.virtual_heap_allocated_capacity) == (ref[1], *ref[3:5], *ref[9:10],
                                                                                      ref[11])

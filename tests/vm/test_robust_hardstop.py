"""The hard stop and restore-time checks (issue 7, finding 4).

A CRC-valid corrupt snapshot could make the engine loop inside one
instruction (a cyclic list of interned strings), where gas never drops: the
host had no way to stop it.  Every entry into the engine now has a time limit
enforced by wasmtime's epoch interruption, and restore rejects what it can
check cheaply.
"""

from __future__ import annotations

import time
import weakref

import pytest

import mvactors
from mvactors import MicroviumError, TimeLimitExceeded, VMUnusable
from mvactors.vm import _wasm
from tests.fuzz.harness import crc16

LOOP_JS = """
const host = vmImport(1);
vmExport(1, () => { let i = 0; while (true) { i++; } });
vmExport(2, (x) => x + 1);
vmExport(3, (n) => { let s = 0; for (let i = 0; i < n; i++) { s = (s + host(i)) & 4095; } return s; });
vmExport(4, (n) => { let s = 0; for (let i = 0; i < n; i++) { s = (s + i) & 4095; } return [s]; });
"""

INTERN_JS = "let o = {}; vmExport(1, (n) => { o['key' + n] = n; return 0; }); vmExport(2, (n) => o['key' + n]);"


def with_crc(snapshot: bytearray) -> bytes:
    snapshot[6:8] = crc16(bytes(snapshot[8:])).to_bytes(2, "little")
    return bytes(snapshot)


def heap_allocations(snapshot: bytes) -> dict[int, tuple[int, bytes]]:
    """Heap offset of each allocation's body -> (type code, body)."""
    heap = int.from_bytes(snapshot[26:28], "little")  # sectionOffsets[BCS_HEAP]
    found, p = {}, heap
    while p < len(snapshot):
        header = int.from_bytes(snapshot[p:p + 2], "little")
        size = header & 0xFFF
        found[p + 2 - heap] = (header >> 12, snapshot[p + 2:p + 2 + size])
        p += 2 + ((size + 1) & ~1)
    return found


def test_endless_guest_loop_is_stopped(compile_js):
    data = compile_js(LOOP_JS)
    vm = mvactors.VM.restore(data, {1: lambda i: i}, time_limit=0.2)
    bystander = mvactors.VM.restore(data, {1: lambda i: i})
    started = time.monotonic()
    with pytest.raises(TimeLimitExceeded, match=r"time limit of 0\.2 s"):
        vm.exports[1]()
    assert time.monotonic() - started < 5  # stopped near its limit, not at the 5 s default
    with pytest.raises(VMUnusable):
        vm.exports[2](1)
    with bystander, mvactors.VM.restore(data, {1: lambda i: i}) as fresh:
        assert bystander.exports[2](41) == 42
        assert fresh.exports[3](10) == 45


def test_a_savepoint_revives_a_stopped_vm(compile_js):
    vm = mvactors.VM.restore(compile_js(LOOP_JS), {1: lambda i: i}, time_limit=0.1)
    with vm:
        point = vm.savepoint()
        with pytest.raises(TimeLimitExceeded):
            vm.exports[1]()
        vm.rollback(point)
        assert vm.exports[2](1) == 2
        with pytest.raises(TimeLimitExceeded):  # the revived VM keeps its limit
            vm.exports[1]()


def test_many_short_calls_never_add_up_to_the_limit(compile_js):
    with mvactors.VM.restore(compile_js(LOOP_JS), {1: lambda i: i}, time_limit=0.05) as vm:
        inc = vm.exports[2]
        until = time.monotonic() + 0.3  # six limits' worth of back-to-back calls
        calls = 0
        while time.monotonic() < until:
            assert inc(calls & 1023) == (calls & 1023) + 1
            calls += 1


def test_time_in_host_functions_does_not_count(compile_js):
    def slow_host(i: int) -> int:
        until = time.monotonic() + 0.06
        while time.monotonic() < until:  # busy in Python, not in the engine
            pass
        return i

    with mvactors.VM.restore(compile_js(LOOP_JS), {1: slow_host}, time_limit=0.1) as vm:
        assert vm.exports[3](6) == 15  # 0.36 s in all, 0.06 s per host call


def test_a_call_the_hard_stop_watched_keeps_nothing_alive_after_it_returns(compile_js):
    # The stop used to know a call by its Python frame, and kept that frame (with its callers'
    # frames and their locals, here the arguments) after the call returned: a proxy the caller
    # dropped stayed alive, so its guest object survived run_gc() (test_run_gc_reclaims_garbage in
    # tests/vm/test_debug_and_memory.py failed now and then).
    hard_stop = _wasm.WasmEngine.get().hard_stop
    assert hard_stop is not None
    with mvactors.VM.restore(compile_js(LOOP_JS), {1: lambda i: i}) as vm:
        deadline = time.monotonic() + 30
        while True:
            argument = vm.exports[4](1)
            calls_seen = hard_stop.call
            vm.exports[4](20_000, argument)  # long enough for a tick to find it running, mostly
            watched = hard_stop.call != calls_seen
            dropped = weakref.ref(argument)
            del argument
            assert dropped() is None
            if watched:
                break
            assert time.monotonic() < deadline, "no tick of the hard stop saw a call in 30 s"


def test_a_nested_call_runs_under_its_own_vms_limit(compile_js):
    # The stop knows the running instance from the engine's entry slot, set by each raw call:
    # inside a host function of `outer` (default 5 s), `inner`'s own 0.1 s limit applies.
    data = compile_js(LOOP_JS)
    inner = mvactors.VM.restore(data, {1: lambda i: i}, time_limit=0.1)

    def call_inner(i: int) -> int:
        inner.exports[1]()
        return i

    with inner, mvactors.VM.restore(data, {1: call_inner}) as outer:
        started = time.monotonic()
        with pytest.raises(mvactors.HostFunctionError) as caught:
            outer.exports[3](1)
        assert isinstance(caught.value.__cause__, TimeLimitExceeded)
        assert "time limit of 0.1 s" in str(caught.value.__cause__)
        assert time.monotonic() - started < 4
        assert outer.exports[2](1) == 2


def test_after_a_nested_call_the_outer_vms_limit_applies_again(compile_js):
    data = compile_js("const host = vmImport(1);\n"
                      "vmExport(1, () => { host(); let i = 0; while (true) { i++; } });\n"
                      "vmExport(2, (x) => x + 1);")
    inner = mvactors.VM.restore(data, {1: lambda: None})  # the default 5 s limit
    with inner, mvactors.VM.restore(data, {1: lambda: inner.exports[2](1)}, time_limit=0.2) as outer:
        started = time.monotonic()
        with pytest.raises(TimeLimitExceeded, match=r"time limit of 0\.2 s"):
            outer.exports[1]()
        assert time.monotonic() - started < 4
        assert inner.exports[2](1) == 2


def test_the_entry_slot_is_cleared_when_calls_return(compile_js):
    engine = _wasm.WasmEngine.get()
    with mvactors.VM.restore(compile_js(LOOP_JS), {1: lambda i: i}) as vm:
        assert vm.exports[2](1) == 2
        assert vm.exports[3](3) == 3
        assert engine.entry.current is None


@pytest.mark.parametrize("bad", [0, -1, float("inf"), float("nan"), "1", True])
def test_time_limit_is_validated(compile_js, bad):
    with pytest.raises((TypeError, ValueError), match="time_limit"):
        mvactors.VM.restore(compile_js(LOOP_JS), {1: lambda i: i}, time_limit=bad)


def test_no_time_limit(compile_js):
    with mvactors.VM.restore(compile_js(LOOP_JS), {1: lambda i: i}, time_limit=None) as vm:
        assert vm.exports[2](1) == 2
        assert not vm._inst.stoppable  # the engine compiled without epoch checks: they cost ~28%


COUNTER_JS = "let n = 0; vmExport(1, (k) => { n += k; return n; });"


def test_vms_with_and_without_a_time_limit_keep_their_own_state(compile_js):
    # The two engines' first instances once shared a host-side cookie, so a call on
    # one VM ran against the other's state.
    data = compile_js(COUNTER_JS)
    limited = mvactors.VM.restore(data)
    unlimited = mvactors.VM.restore(data, time_limit=None)
    with limited, unlimited:
        assert [limited.exports[1](1), unlimited.exports[1](10), limited.exports[1](1)] == [1, 10, 2]
        assert unlimited.exports[1](10) == 20


def test_rollback_and_wake_keep_the_vm_without_a_time_limit(compile_js):
    vm = mvactors.VM.restore(compile_js(COUNTER_JS), time_limit=None)
    point = vm.savepoint()
    vm.exports[1](5)
    vm.rollback(point)
    assert vm.exports[1](1) == 1 and not vm._inst.stoppable
    woken, _ = mvactors.VM.wake(vm.hibernate(), time_limit=None)
    with woken:
        assert woken.exports[1](1) == 2 and not woken._inst.stoppable


def test_cyclic_interned_string_list_is_rejected_at_restore(compile_js):
    vm = mvactors.VM.restore(compile_js(INTERN_JS))
    vm.exports[1](5)  # interns "key5" in RAM
    snapshot = bytearray(vm.create_snapshot())
    vm.close()
    heap = int.from_bytes(snapshot[26:28], "little")
    cells = [offset for offset, (_tc, body) in heap_allocations(bytes(snapshot)).items()
             if len(body) == 4 and body[:2] == b"\x01\x00"]  # [spNext = end of list, str]
    (cell,) = cells
    snapshot[heap + cell:heap + cell + 2] = cell.to_bytes(2, "little")  # the cell points at itself
    with pytest.raises(MicroviumError, match="MVM_E_INVALID_BYTECODE"):
        mvactors.VM.restore(with_crc(snapshot))
    with mvactors.VM.restore(compile_js(INTERN_JS)) as fresh:
        fresh.exports[1](6)
        assert fresh.exports[2](6) == 6


def test_a_stop_after_a_host_call_is_not_mistaken_for_a_result(compile_js):
    # Reading the string argument makes raw calls that leave their result in the
    # slot the outer call's result comes back in; the stopped call once returned it.
    data = compile_js("const log = vmImport(1);\n"
                      "vmExport(1, (n) => { log('spin'); let s = 0; while (true) { s = s + n; } });")
    seen = []
    with mvactors.VM.restore(data, {1: seen.append}, time_limit=0.05) as vm, pytest.raises(TimeLimitExceeded):
        vm.exports[1](1)
    assert seen == ["spin"]

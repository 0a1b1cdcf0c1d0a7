"""Closed VMs give their engine instance back for the next restore (the process keeps no more than it needs)."""

from __future__ import annotations

import mvactors
from mvactors.vm import _pool


def test_a_closed_vm_instance_is_reused_by_the_next_restore(snapshot):
    hello = snapshot("hello")
    first = mvactors.VM.restore(hello, imports={1: print})
    instance = first._inst
    first.close()
    assert instance in _pool._idle[True] and instance not in _pool._busy  # not mistaken for one still running
    second = mvactors.VM.restore(hello, imports={1: print})
    try:
        assert second._inst is instance
    finally:
        second.close()


HOST_JS = "const f = vmImport(1); vmExport(1, (x) => f(x) + 1);"


def test_host_calls_reach_instances_numbered_past_16_bits(compile_js, monkeypatch):
    # 100,000 live VMs need instance cookies above 65,535: the host call carries them in 64 bits.
    from mvactors.vm import _wasm

    monkeypatch.setattr(_pool, "_idle", {True: [], False: []})  # brand-new instances, numbered from here
    monkeypatch.setattr(_wasm.WasmEngine, "_next_cookie", 0x1_0000 - 1)
    data = compile_js(HOST_JS)
    vms = [mvactors.VM.restore(data, {1: lambda x, k=k: x * 10 + k}) for k in range(3)]
    try:
        assert [vm._inst.cookie for vm in vms] == [0xFFFF, 0x1_0000, 0x1_0001]
        assert [vm.exports[1](4) for vm in vms] == [41, 42, 43]
    finally:
        for vm in vms:
            vm.close()


def test_running_out_of_instances_says_what_limits_them(monkeypatch):
    from mvactors.vm import _wasm

    def no_room(*_: object) -> None:
        raise RuntimeError("mmap failed to reserve 0x60000 bytes")

    monkeypatch.setattr(_pool, "_idle", {True: [], False: []})
    monkeypatch.setattr(_wasm, "Instance", no_room)
    for stoppable, cause in ((True, "memory"), (False, "time_limit=None")):
        try:
            _pool.take(stoppable)
        except mvactors.EngineExhausted as exc:
            assert cause in str(exc) and "max_map_count" not in str(exc)
        else:
            raise AssertionError("no EngineExhausted")

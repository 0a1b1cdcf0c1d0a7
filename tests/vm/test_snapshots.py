"""create_snapshot(): the VM's state, persisted and restored (tests/guest/counter.js)."""

from __future__ import annotations

import struct

import pytest
from conftest import compile_guest

import mvactors
from mvactors import MicroviumError

INCREMENT, GET_COUNT, GET_LOG, RENAME, GET_SETTINGS, STORE_CLOSURE, CALL_STORED = range(1, 8)


def test_snapshot_round_trip_keeps_globals(make_vm):
    printed = []
    vm = make_vm("counter", {1: printed.append})
    vm.exports[INCREMENT](5)
    vm.exports[INCREMENT](10)
    vm.exports[RENAME]("persisted")
    data = vm.create_snapshot()
    assert isinstance(data, bytes)
    assert printed == ["renamed to persisted"]

    restored = make_vm(data, {1: printed.append})
    assert restored.exports[GET_COUNT]() == 15
    assert restored.exports[GET_LOG]().to_python() == [5, 15]
    assert restored.exports[GET_SETTINGS]().to_python() == {"name": "persisted"}
    # The restored VM carries on from there, independently of the original.
    assert restored.exports[INCREMENT](1) == 16
    assert vm.exports[GET_COUNT]() == 15
    assert vm.exports[INCREMENT](100) == 115
    assert restored.exports[GET_COUNT]() == 16


def test_snapshot_keeps_closures(make_vm):
    vm = make_vm("counter", {1: print})
    f = vm.exports[STORE_CLOSURE]()
    assert f() == 1
    assert vm.exports[CALL_STORED]() == 2
    restored = make_vm(vm.create_snapshot(), {1: print})
    assert restored.exports[CALL_STORED]() == 3
    assert restored.exports[CALL_STORED]() == 4
    assert vm.exports[CALL_STORED]() == 3


def test_snapshot_of_a_fresh_vm_restores_like_the_original(snapshot, make_vm):
    vm = make_vm("counter", {1: print})
    data = vm.create_snapshot()
    assert data[0] == snapshot("counter")[0] == 8
    restored = make_vm(data, {1: print})
    assert restored.exports[GET_COUNT]() == 0
    assert restored.exports[GET_SETTINGS]().to_python() == {"name": "initial"}
    assert restored.required_engine_version == vm.required_engine_version


def test_snapshot_header_is_valid(make_vm):
    vm = make_vm("counter", {1: print})
    vm.exports[INCREMENT](3)
    data = vm.create_snapshot()
    version, header_size, _, _, size, _crc = struct.unpack_from("<BBBBHH", data, 0)
    assert version == 8
    assert size == len(data)
    assert header_size <= len(data)
    # The CRC is checked on restore: a flipped byte is detected.
    corrupted = bytearray(data)
    corrupted[-1] ^= 0xFF
    with pytest.raises(MicroviumError) as info:
        mvactors.VM.restore(corrupted, imports={1: print})
    assert info.value.code == "MVM_E_BYTECODE_CRC_FAIL"


def test_snapshot_chain(make_vm):
    data = make_vm("counter", {1: print}).create_snapshot()
    for i in range(1, 6):
        vm = make_vm(data, {1: print})
        assert vm.exports[INCREMENT](1) == i
        data = vm.create_snapshot()
    final = make_vm(data, {1: print})
    assert final.exports[GET_LOG]().to_python() == [1, 2, 3, 4, 5]


def _use_and_close_a_vm(fill: int) -> None:
    """Run a VM whose heap is full of ``fill`` bytes, then close it."""
    with mvactors.VM.restore(compile_guest("values"), imports={2: print, 3: print}) as vm:
        held = [vm.exports[1](chr(fill) * 200) for _ in range(20)]
        held += [vm.exports[1](bytes([fill]) * 300) for _ in range(20)]
        del held


def _snapshot_after_fixed_work() -> bytes:
    with mvactors.VM.restore(compile_guest("counter"), imports={1: lambda text: None}) as vm:
        vm.exports[INCREMENT](7)
        vm.exports[RENAME]("same")  # odd-sized allocations have a padding byte
        vm.exports[RENAME]("odd")
        return vm.create_snapshot()


def test_snapshot_does_not_contain_bytes_from_previously_closed_vms():
    _use_and_close_a_vm(ord("A"))
    first = _snapshot_after_fixed_work()
    _use_and_close_a_vm(ord("Z"))
    second = _snapshot_after_fixed_work()
    assert first == second


def test_snapshot_restored_vm_still_needs_its_imports(make_vm):
    vm = make_vm("counter", {1: print})
    data = vm.create_snapshot()
    with pytest.raises(MicroviumError) as info:
        mvactors.VM.restore(data, imports={})
    assert info.value.code == "MVM_E_UNRESOLVED_IMPORT"


def test_snapshot_does_not_include_python_side_proxies(make_vm):
    vm = make_vm("counter", {1: print})
    settings = vm.exports[GET_SETTINGS]()
    settings.name = "changed through a proxy"
    restored = make_vm(vm.create_snapshot(), {1: print})
    assert restored.exports[GET_SETTINGS]().name == "changed through a proxy"
    settings.name = "after the snapshot"
    assert restored.exports[GET_SETTINGS]().name == "changed through a proxy"


def test_snapshot_round_trip_through_a_file(make_vm, tmp_path):
    vm = make_vm("counter", {1: print})
    vm.exports[INCREMENT](42)
    path = tmp_path / "state.mvm-bc"
    path.write_bytes(vm.create_snapshot())
    restored = make_vm(path.read_bytes(), {1: print})
    assert restored.exports[GET_COUNT]() == 42
    with mvactors.VM.restore(path, imports={1: print}) as from_path:
        assert from_path.exports[GET_COUNT]() == 42

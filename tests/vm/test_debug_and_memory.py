"""Breakpoints, memory statistics and garbage collection."""

from __future__ import annotations

import re

import pytest
from conftest import disassemble, function_instruction_addresses, guest_source

import mvactors
from mvactors import MicroviumError

ADD, TWICE = 1, 2



STAT_FIELDS = (
    "total_size",
    "fragment_count",
    "core_size",
    "import_table_size",
    "global_variables_size",
    "registers_size",
    "stack_height",
    "stack_allocated_capacity",
    "stack_high_water_mark",
    "virtual_heap_used",
    "virtual_heap_high_water_mark",
    "virtual_heap_allocated_capacity",
)


@pytest.fixture(scope="module")
def addresses() -> dict[str, list[int]]:
    listing = disassemble(guest_source("breakpoints"))
    found = {name: function_instruction_addresses(listing, name) for name in ("add", "twice")}
    assert found["add"] and found["twice"]
    return found


@pytest.fixture(scope="module")
def listing_size() -> int:
    listing = disassemble(guest_source("breakpoints"))
    return int(re.search(r"Bytecode size: (\d+) B", listing).group(1))


class Recorder:
    def __init__(self) -> None:
        self.hits: list[int] = []
        self.current: list[int] = []
        self.vm: mvactors.VM | None = None

    def __call__(self, address: int) -> None:
        self.hits.append(address)
        if self.vm is not None:
            self.current.append(self.vm.current_address)


@pytest.fixture
def traced(snapshot, make_vm, listing_size):
    assert len(snapshot("breakpoints")) == listing_size  # same bytecode as the disassembly
    recorder = Recorder()
    vm = make_vm("breakpoints", breakpoint_hit=recorder)
    recorder.vm = vm
    return vm, recorder


# ---------------------------------------------------------------- breakpoints


def test_breakpoint_on_every_instruction(traced, addresses):
    vm, rec = traced
    vm.set_breakpoint(-1)
    assert vm.exports[ADD](2, 3) == 5
    assert rec.hits == addresses["add"]


def test_every_instruction_trace_of_nested_calls(traced, addresses):
    vm, rec = traced
    vm.set_breakpoint(-1)
    assert vm.exports[TWICE](4) == 13
    assert set(rec.hits) == set(addresses["twice"]) | set(addresses["add"])
    assert rec.hits[0] == addresses["twice"][0]
    assert rec.hits[-1] == addresses["twice"][-1]
    assert rec.hits.count(addresses["add"][0]) == 2


def test_breakpoint_on_one_address(traced, addresses):
    vm, rec = traced
    target = addresses["add"][2]  # the BinOp '+'
    vm.set_breakpoint(target)
    assert vm.exports[ADD](1, 1) == 2
    assert rec.hits == [target]
    assert vm.exports[TWICE](1) == 4
    assert rec.hits == [target] * 3


def test_current_address_inside_the_callback(traced, addresses):
    vm, rec = traced
    vm.set_breakpoint(-1)
    vm.exports[ADD](1, 2)
    assert rec.current == rec.hits


def test_remove_breakpoint(traced, addresses):
    vm, rec = traced
    first, second = addresses["add"][0], addresses["add"][-1]
    vm.set_breakpoint(first)
    vm.set_breakpoint(second)
    vm.exports[ADD](1, 2)
    assert rec.hits == [first, second]
    vm.remove_breakpoint(first)
    vm.exports[ADD](1, 2)
    assert rec.hits == [first, second, second]
    vm.remove_breakpoint(second)
    vm.exports[ADD](1, 2)
    assert rec.hits == [first, second, second]


def test_setting_a_breakpoint_twice_hits_once(traced, addresses):
    vm, rec = traced
    target = addresses["add"][0]
    vm.set_breakpoint(target)
    vm.set_breakpoint(target)
    vm.exports[ADD](1, 2)
    assert rec.hits == [target]


def test_remove_every_instruction_breakpoint(traced):
    vm, rec = traced
    vm.set_breakpoint(-1)
    vm.exports[ADD](1, 2)
    assert rec.hits
    count = len(rec.hits)
    vm.remove_breakpoint(-1)
    assert vm.exports[ADD](1, 2) == 3
    assert len(rec.hits) == count


def test_breakpoint_at_a_non_instruction_address_is_never_hit(traced, addresses):
    vm, rec = traced
    vm.set_breakpoint(addresses["twice"][0] + 1)  # inside a 3-byte instruction
    assert vm.exports[TWICE](2) == 7
    assert rec.hits == []


def test_no_breakpoints_no_hits(traced):
    vm, rec = traced
    assert vm.exports[TWICE](2) == 7
    assert rec.hits == []


# ---------------------------------------------------------------- memory stats


def test_memory_stats_fields(make_vm):
    vm = make_vm("values", {2: print, 3: print})
    stats = vm.get_memory_stats()
    for field in STAT_FIELDS:
        value = getattr(stats, field)
        assert isinstance(value, int) and value >= 0, field
    assert stats.total_size > 0
    assert stats.core_size > 0
    assert stats.import_table_size > 0  # values.js imports two host functions
    assert stats.registers_size == 0  # no call active
    assert stats.stack_height == 0
    assert stats.virtual_heap_used <= stats.virtual_heap_allocated_capacity
    assert stats.virtual_heap_used <= stats.virtual_heap_high_water_mark


def test_import_table_size_scales_with_imports(make_vm):
    none = make_vm(mvactors.compile("vmExport(1, (x) => x);\n")).get_memory_stats()
    two = make_vm("values", {2: print, 3: print}).get_memory_stats()
    assert none.import_table_size == 0
    assert two.import_table_size > 0


def test_memory_stats_inside_a_host_call(snapshot):
    seen = []
    holder: list[mvactors.VM] = []

    def host(x):
        seen.append(holder[0].get_memory_stats())
        return x

    with mvactors.VM.restore(snapshot("values"), imports={2: host, 3: print}) as vm:
        holder.append(vm)
        vm.exports[32](1)  # callHostTwo
        after = vm.get_memory_stats()
    assert seen[0].stack_height > 0
    assert seen[0].registers_size > 0
    assert after.stack_height == 0
    assert after.stack_high_water_mark >= seen[0].stack_height


def test_heap_grows_with_retained_data_and_shrinks_after_gc(make_vm):
    vm = make_vm("values", {2: print, 3: print})
    vm.run_gc(squeeze=True)
    baseline = vm.get_memory_stats().virtual_heap_used
    vm.exports[40]([[i, str(i)] for i in range(200)])  # keep()
    vm.run_gc()
    loaded = vm.get_memory_stats().virtual_heap_used
    assert loaded > baseline + 1000
    vm.exports[40](None)
    vm.run_gc(squeeze=True)
    released = vm.get_memory_stats()
    assert released.virtual_heap_used < baseline + 100
    assert released.virtual_heap_high_water_mark >= loaded


def test_run_gc_reclaims_garbage(make_vm):
    vm = make_vm("values", {2: print, 3: print})
    vm.exports[28](20)  # warm up: the engine may hold on to the last result
    vm.run_gc()
    before = vm.get_memory_stats().virtual_heap_used
    for _ in range(30):
        vm.exports[28](20)  # makeArray, dropped immediately
    vm.run_gc()
    assert vm.get_memory_stats().virtual_heap_used <= before + 16
    vm.run_gc(squeeze=True)
    squeezed = vm.get_memory_stats()
    assert squeezed.virtual_heap_used <= before + 16
    assert squeezed.virtual_heap_allocated_capacity >= squeezed.virtual_heap_used


def test_run_gc_keeps_live_proxies(make_vm):
    vm = make_vm("values", {2: print, 3: print})
    obj = vm.exports[1]({"a": [1, 2, 3], "s": "text"})
    fn = vm.exports[24](10)  # makeClosure
    view = vm.exports[1](b"\x01\x02")
    for squeeze in (False, True, False, True):
        vm.run_gc(squeeze=squeeze)
        assert obj.to_python() == {"a": [1, 2, 3], "s": "text"}
        assert bytes(view) == b"\x01\x02"
    assert fn(1) == 1011


def test_dropping_proxies_lets_gc_reclaim(make_vm):
    vm = make_vm("values", {2: print, 3: print})
    vm.run_gc(squeeze=True)
    baseline = vm.get_memory_stats().virtual_heap_used
    held = [vm.exports[1](["x" * 50, i]) for i in range(40)]
    vm.run_gc()
    assert vm.get_memory_stats().virtual_heap_used > baseline + 1000
    del held
    vm.run_gc(squeeze=True)
    assert vm.get_memory_stats().virtual_heap_used < baseline + 100


@pytest.mark.parametrize(
    "operation",
    [
        pytest.param(lambda vm, arr, obj: arr[1], id="array[i]"),  # bounds check reads length
        pytest.param(lambda vm, arr, obj: obj.a, id="object.attr"),
        pytest.param(lambda vm, arr, obj: setattr(obj, "a", 5), id="object.attr = v"),
        pytest.param(lambda vm, arr, obj: vm.exports[1]({"k": [1, "s"]}), id="round trip, dropped"),
        pytest.param(lambda vm, arr, obj: len(arr), id="len(array)"),
        pytest.param(lambda vm, arr, obj: list(arr), id="iter(array)"),
        pytest.param(lambda vm, arr, obj: arr.to_python(), id="array.to_python()"),
        pytest.param(lambda vm, arr, obj: obj.keys(), id="object.keys()"),
        pytest.param(lambda vm, arr, obj: obj.to_python(), id="object.to_python()"),
    ],
)
def test_proxy_operations_do_not_leak_guest_heap(make_vm, operation):
    vm = make_vm("values", {2: print, 3: print})
    arr = vm.exports[28](3)
    obj = vm.exports[1]({"a": 1, "b": 2})
    operation(vm, arr, obj)
    vm.run_gc(squeeze=True)
    baseline = vm.get_memory_stats().virtual_heap_used
    for _ in range(500):
        operation(vm, arr, obj)
    vm.run_gc(squeeze=True)
    assert vm.get_memory_stats().virtual_heap_used <= baseline + 64


def test_guest_reading_a_length_key_passed_from_python_does_not_leak(make_vm):
    vm = make_vm("values", {2: print, 3: print})
    arr = vm.exports[28](3)
    assert vm.exports[10](arr, "length") == 3  # getProp(a, "length")
    vm.run_gc(squeeze=True)
    baseline = vm.get_memory_stats().virtual_heap_used
    for _ in range(500):
        vm.exports[10](arr, "length")
    vm.run_gc(squeeze=True)
    assert vm.get_memory_stats().virtual_heap_used <= baseline + 64


def test_long_lived_vm_survives_many_proxy_calls(make_vm):
    vm = make_vm("values", {2: print, 3: print})
    arr = vm.exports[28](4)
    for _ in range(6000):
        assert len(arr) == 4
    assert vm.exports[1](1) == 1


def test_memory_stats_on_closed_vm_raise(snapshot):
    vm = mvactors.VM.restore(snapshot("values"), imports={2: print, 3: print})
    with vm:
        pass
    with pytest.raises(MicroviumError):
        vm.get_memory_stats()
    with pytest.raises(MicroviumError):
        vm.run_gc()

"""Errors a caller sees are MicroviumErrors or documented standard types (issue 7, findings 5 and 6)."""

from __future__ import annotations

from typing import Any

import pytest
from test_robust_hardstop import heap_allocations, with_crc

import mvactors
from mvactors import MicroviumError

STORE_JS = """
let a;
let s;
let kept;
vmExport(1, (n) => { a = [n, n + 1, n + 2]; s = 'str' + n; return 0; });
vmExport(2, () => a);
vmExport(3, () => s);
vmExport(4, (v) => { kept = v; return 0; });
vmExport(5, () => kept);
vmExport(6, (n) => { let x = 1; for (let i = 0; i < n; i++) { x = [x]; } kept = x; return n; });
"""


def nested(depth: int) -> Any:
    value: Any = 1
    for i in range(depth):
        value = [value] if i % 2 else {"x": value}
    return value


# ---- finding 5: explicit nesting limits, corrupt strings and lengths ----


@pytest.mark.parametrize("depth", [64, 65, 400, 2000])
def test_deep_arguments_are_refused_with_a_value_error(compile_js, depth):
    with mvactors.VM.restore(compile_js(STORE_JS)) as vm:
        if depth <= 64:
            vm.exports[4](nested(depth))
            assert vm.exports[5]().to_python() == nested(depth)
        else:
            with pytest.raises(ValueError, match="deeper than 64 levels"):
                vm.exports[4](nested(depth))
        assert vm.exports[1](1) == 0  # the VM still works


@pytest.mark.parametrize("depth", [64, 65, 400])
def test_deep_guest_values_are_refused_by_to_python(compile_js, depth):
    with mvactors.VM.restore(compile_js(STORE_JS)) as vm:
        vm.exports[6](depth)
        value = vm.exports[5]()
        if depth <= 64:  # 64 nested containers are fine, one more is not
            copied = value.to_python()
            for _ in range(depth):
                (copied,) = copied
            assert copied == 1
        else:
            with pytest.raises(ValueError, match="deeper than 64 levels"):
                value.to_python()


def corrupt(compile_js, edit) -> bytes:
    vm = mvactors.VM.restore(compile_js(STORE_JS))
    vm.exports[1](7)
    snapshot = bytearray(vm.create_snapshot())
    vm.close()
    heap = int.from_bytes(snapshot[26:28], "little")
    allocations = heap_allocations(bytes(snapshot))
    edit(snapshot, heap, allocations)
    return with_crc(snapshot)


def test_invalid_utf8_in_a_corrupt_snapshot_is_a_microvium_error(compile_js):
    def edit(snapshot, heap, allocations):
        (offset,) = [o for o, (tc, body) in allocations.items() if body == b"str7\x00"]
        snapshot[heap + offset] = 0xFF

    with mvactors.VM.restore(corrupt(compile_js, edit)) as vm, pytest.raises(MicroviumError, match="not valid UTF-8"):
        vm.exports[3]()


def test_a_corrupt_array_length_is_a_microvium_error(compile_js):
    def edit(snapshot, heap, allocations):
        (offset,) = [o for o, (tc, body) in allocations.items() if tc == 0xD]  # TC_REF_ARRAY
        snapshot[heap + offset + 2:heap + offset + 4] = ((-5 << 2) | 3 & 0xFFFF).to_bytes(2, "little", signed=True)

    with mvactors.VM.restore(corrupt(compile_js, edit)) as vm:
        with pytest.raises(MicroviumError, match="length -5"):
            len(vm.exports[2]())
        with pytest.raises(MicroviumError, match="length -5"):
            vm.exports[2]().to_python()


# ---- finding 6: an argument the heap cannot take is refused, and the VM lives ----


@pytest.mark.parametrize("make", [
    lambda: {f"key{i}": i for i in range(3000)},
    lambda: {f"key{i}": i for i in range(1200)},
    lambda: ["x" * 20 + str(i) for i in range(2000)],
    lambda: [{"k": "v" * 100} for _ in range(400)],
])
def test_an_argument_too_large_for_the_heap_is_refused(compile_js, make):
    with mvactors.VM.restore(compile_js(STORE_JS)) as vm:
        with pytest.raises(MicroviumError, match="bytes of guest heap") as caught:
            vm.exports[4](make())
        assert caught.value.code == "MVM_E_OUT_OF_MEMORY"
        assert not vm.closed
        vm.exports[4]({f"key{i}": i for i in range(500)})  # what fits still goes in
        assert vm.exports[5]().to_python() == {f"key{i}": i for i in range(500)}


def test_a_host_result_too_large_for_the_heap_is_a_host_function_error(compile_js):
    source = "const h = vmImport(1); let kept; vmExport(1, () => { kept = h(); return 0; }); vmExport(2, () => 7);"
    with mvactors.VM.restore(compile_js(source), {1: lambda: {f"key{i}": i for i in range(3000)}}) as vm:
        with pytest.raises(MicroviumError):
            vm.exports[1]()
        assert vm.exports[2]() == 7

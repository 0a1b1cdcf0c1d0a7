"""Findings of issue 13's audit of the engine's size computations beyond the GC (engine/build.py).

* Offsets into a snapshot are 16-bit and unsigned, but ``LongPtr_add`` took an ``int16_t``: a
  program whose snapshot passed 32,767 bytes could not be restored (its globals read as zeros),
  nor read its ROM past 32 KB.
* A snapshot holds at most 65,535 bytes; a program with a large ROM reached that with a heap well
  under its limit, and ``create_snapshot`` killed the VM (MVM_E_SNAPSHOT_TOO_LARGE).
"""

from __future__ import annotations

import pytest
from conftest import compile_source

import mvactors
from mvactors.errors import MicroviumError
from mvactors.testing import NativeVM, native_available

needs_native = pytest.mark.skipif(not native_available(), reason="the native reference engine is not built")


def big_program(literals: int, size: int) -> str:
    """A program whose ROM holds ``literals`` string literals of ``size`` bytes each."""
    texts = ",\n".join("'" + chr(65 + i) * size + "'" for i in range(literals))
    return f"""
const big = [{texts}];
let keep = [];
vmExport(1, (n) => {{ for (let i = 0; i < n; i++) keep.push('k' + i); return keep.length; }});
vmExport(2, () => {{ keep = []; return 0; }});
vmExport(3, (i) => big[i]);
vmExport(4, () => keep.length);
"""


def test_a_snapshot_past_32_kb_restores_and_reads_its_rom() -> None:
    snapshot = compile_source(big_program(10, 3700))
    assert 32768 < len(snapshot) < 65536
    vm = mvactors.VM.restore(snapshot)
    assert vm.exports[1](5) == 5
    assert vm.exports[3](9) == "J" * 3700  # the last literal lies past 32 KB
    again = mvactors.VM.restore(vm.create_snapshot())
    assert again.exports[4]() == 5
    assert again.exports[3](9) == "J" * 3700


@needs_native
def test_a_snapshot_past_32_kb_restores_natively() -> None:
    snapshot = compile_source(big_program(10, 3700))
    with NativeVM.restore(snapshot) as vm:
        assert vm.call(1, 5) == 5
        assert vm.call(3, 9) == "J" * 3700


def test_a_snapshot_too_large_is_an_error_and_the_vm_runs_on() -> None:
    vm = mvactors.VM.restore(compile_source(big_program(10, 4000)))
    vm.exports[1](2000)  # ~27 KB of heap: with the ~40 KB program, past 65,535 bytes
    with pytest.raises(MicroviumError, match="exceed the 65,535 bytes a snapshot holds") as raised:
        vm.create_snapshot(collect=False)
    assert raised.value.code == "MVM_E_SNAPSHOT_TOO_LARGE"
    assert vm.exports[4]() == 2000  # alive
    vm.exports[2]()  # drop the state: the default snapshot collects the garbage and fits
    restored = mvactors.VM.restore(vm.create_snapshot())
    assert restored.exports[4]() == 0
    assert restored.exports[3](0) == "A" * 4000

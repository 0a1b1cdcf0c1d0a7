"""VM.savepoint() / VM.rollback(): undo every effect of the calls in between."""

from __future__ import annotations

import gc

import pytest

import mvactors
from tests.conftest import compile_guest

ADD, TOTAL, COUNT, ITEMS, ITEM = 1, 2, 3, 4, 5


@pytest.fixture
def vm():
    with mvactors.VM.restore(compile_guest("savepoint")) as vm:
        yield vm


def test_rollback_undoes_guest_mutations(vm):
    vm.exports[ADD](10)
    savepoint = vm.savepoint()
    vm.exports[ADD](200)
    assert vm.exports[COUNT]() == 210
    vm.rollback(savepoint)
    assert vm.exports[TOTAL]() == 45
    assert vm.exports[COUNT]() == 10
    assert vm.exports[ADD](1) == 45  # the VM keeps working from the restored state


def test_rollback_after_gas_exhaustion_leaves_a_usable_vm(vm):
    vm.exports[ADD](3)
    vm.stop_after_n_instructions(300)
    savepoint = vm.savepoint()
    with pytest.raises(mvactors.GasExhausted):
        vm.exports[ADD](10_000)
    vm.rollback(savepoint)
    vm.stop_after_n_instructions(-1)
    assert vm.exports[COUNT]() == 3
    assert vm.exports[ADD](2) == 3 + 1


def test_values_held_before_the_savepoint_survive_and_later_ones_read_undefined(vm):
    vm.exports[ADD](5)
    before = vm.exports[ITEMS]()
    savepoint = vm.savepoint()
    vm.exports[ADD](5)
    after = [vm.exports[ITEM](i) for i in range(40)]  # links more handle slots than the first chunk
    vm.rollback(savepoint)
    vm.run_gc(squeeze=True)
    assert before.to_python() == [{"v": i} for i in range(5)]
    assert after[0].to_python() is None  # emptied: never a value from the undone calls
    del after
    gc.collect()
    fresh = [vm.exports[ITEM](i) for i in range(5)]  # slots freed by the dropped proxies are reused safely
    assert [f.v for f in fresh] == list(range(5))
    assert before.to_python() == [{"v": i} for i in range(5)]


def test_rollback_needs_this_vms_savepoint(vm):
    other = mvactors.VM.restore(compile_guest("savepoint"))
    try:
        with pytest.raises(mvactors.MicroviumError, match="savepoint"):
            vm.rollback(other.savepoint())
    finally:
        other.close()


def test_rollback_forgets_pending_async_calls_started_since():
    source = """
        const fetch = vmImport(1);
        let got = 0;
        vmExport(1, async () => { got = await fetch(); return got; });
        vmExport(2, () => got);
    """
    started = []

    async def fetch():  # never awaited: the handler below only records the call
        return 1

    with mvactors.VM.restore(mvactors.compile(source), {1: fetch}) as vm:
        vm.async_handler = lambda token, import_id, fn, args: started.append(token)
        savepoint = vm.savepoint()
        with pytest.warns(RuntimeWarning, match="never awaited"):
            vm.exports[1]()
        assert vm.pending_async_calls == started == [1]
        vm.rollback(savepoint)
        assert vm.pending_async_calls == []
        with pytest.raises(KeyError):
            vm.resolve_async(1, True, 5)
        assert vm.exports[2]() == 0


def test_rollback_revives_a_vm_after_a_fatal_error():
    source = """
        let kept = null;
        let length = 0;
        let n = 0;
        vmExport(1, () => { n++; return n; });
        vmExport(2, () => { while (true) { kept = { next: kept, pad: [1, 2, 3, 4, 5, 6, 7, 8] }; length++; } });
        vmExport(3, () => length);
    """
    with mvactors.VM.restore(mvactors.compile(source)) as vm:
        inc, hog, count = vm.exports[1], vm.exports[2], vm.exports[3]
        assert inc() == 1
        savepoint = vm.savepoint()
        with pytest.raises(mvactors.VMUnusable, match="out of memory"):
            hog()
        with pytest.raises(mvactors.VMUnusable):
            inc()
        vm.rollback(savepoint)
        assert count() == 0
        assert inc() == 2  # a proxy from before the failure calls the revived VM
        assert vm.exports[1]() == 3
        vm.run_gc(squeeze=True)
        assert vm.create_snapshot()


@pytest.mark.anyio
async def test_metered_actor_survives_a_turn_that_runs_out_of_memory():
    source = """
        let kept = null;
        let n = 0;
        vmExport(1, () => { n++; return n; });
        vmExport(2, () => { while (true) { kept = { next: kept, pad: [1, 2, 3, 4, 5, 6, 7, 8] }; } });
    """
    snapshot = mvactors.compile(source)
    async with mvactors.Runtime() as rt:
        metered = await rt.spawn(snapshot, gas=mvactors.GasPolicy(per_turn=10_000_000))
        plain = await rt.spawn(snapshot)
        assert await metered.call(1) == 1
        with pytest.raises(mvactors.VMUnusable, match="out of memory"):
            await metered.call(2)
        assert metered.state == "idle"
        assert await metered.call(1) == 2  # the failed turn left no trace
        with pytest.raises(mvactors.VMUnusable):
            await plain.call(2)
        assert plain.state == "failed"  # unmetered: no savepoint to return to


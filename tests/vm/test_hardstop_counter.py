"""The hard stop through the instruction counter (issue 18, "A cheaper hard stop").

The default engine has no epoch checks: the ticker thread ends a call that
outran its time limit by writing 0 into the VM's instruction counter, and the
glue's ``stop`` word tells that stop from a gas budget running out.  The caller
sees exactly what the epoch trap gave (TimeLimitExceeded, the VM unusable), a
gas budget still gives GasExhausted, and a stop that lands after its call has
ended never stops the next one.  tests/vm/test_robust_hardstop.py holds the
behaviour that did not change (nested VMs, time in host functions, savepoints).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import mvactors
from mvactors import GasExhausted, TimeLimitExceeded, VMUnusable
from mvactors.vm import _wasm

LOOP_JS = """
const host = vmImport(1);
vmExport(1, () => { let i = 0; while (true) { i++; } });
vmExport(2, (x) => x + 1);
vmExport(3, (n) => { let s = 0; for (let i = 0; i < n; i++) { s = (s + i) & 4095; } return s; });
vmExport(4, () => { host(0); let i = 0; while (true) { i++; } });
vmExport(5, (n) => host(n));
"""

STOPPED = ("the VM hit a fatal error and cannot be used again: the hard stop ended a call that ran longer than "
           "the VM's time limit of 0.2 s (an endless loop in the guest, or a corrupt snapshot); "
           "see VM.restore(time_limit=)")
UNUSABLE = ("the VM is unusable after a fatal error: the hard stop ended a call that ran longer than the VM's "
            "time limit of 0.2 s (an endless loop in the guest, or a corrupt snapshot); see VM.restore(time_limit=)")


def both_paths(fn: Any) -> list[tuple[str, Callable[[], Any]]]:
    """Calling guest function ``fn`` through the active path and through the pure-Python closure."""
    return [("active", fn), ("python", lambda *a: type(fn)._py_call(fn, *a))]


@pytest.mark.parametrize("path", ["active", "python"])
def test_a_runaway_loop_is_stopped_with_the_epoch_traps_error(compile_js, path):
    vm = mvactors.VM.restore(compile_js(LOOP_JS), {1: lambda i: i}, time_limit=0.2)
    call = dict(both_paths(vm.exports[1]))[path]
    started = time.monotonic()
    with pytest.raises(TimeLimitExceeded) as caught:
        call()
    elapsed = time.monotonic() - started
    assert 0.19 <= elapsed < 3, elapsed  # the limit, plus a few ticks on a loaded machine
    assert str(caught.value) == STOPPED
    assert caught.value.code == "MVM_E_FATAL_ERROR_MUST_KILL_VM"
    assert not isinstance(caught.value, GasExhausted)
    with pytest.raises(VMUnusable) as after:
        vm.exports[2](1)
    assert str(after.value) == UNUSABLE and not isinstance(after.value, TimeLimitExceeded)
    assert vm.closed
    vm.close()


def test_the_engine_has_no_epoch_checks(compile_js):
    engine = _wasm.WasmEngine.get()
    assert engine.hard_stop is not None
    # A store of an engine with epoch interruption traps at once without a deadline; this one
    # never sets one, so a call running proves the checks are not compiled in.
    with mvactors.VM.restore(compile_js(LOOP_JS), {1: lambda i: i}) as vm:
        assert vm.exports[3](1000) == sum(range(1000)) & 4095


def test_a_stop_is_not_gas_exhaustion_even_with_a_budget_armed(compile_js):
    # The interpreter decrements an armed counter every instruction and may write over the
    # ticker's 0: the ticker writes again at every tick while the call runs.
    with mvactors.VM.restore(compile_js(LOOP_JS), {1: lambda i: i}, time_limit=0.2) as vm:
        vm.stop_after_n_instructions(2**31 - 1)  # minutes of guest time
        started = time.monotonic()
        with pytest.raises(TimeLimitExceeded, match=r"time limit of 0\.2 s"):
            vm.exports[1]()
        assert time.monotonic() - started < 3


@pytest.mark.parametrize("path", ["active", "python"])
def test_gas_exhaustion_is_not_a_stop(compile_js, path):
    with mvactors.VM.restore(compile_js(LOOP_JS), {1: lambda i: i}, time_limit=0.2) as vm:
        call = dict(both_paths(vm.exports[1]))[path]
        for _ in range(3):
            vm.stop_after_n_instructions(10_000)
            with pytest.raises(GasExhausted):
                call()
            assert vm.get_remaining_instructions() == 0
        vm.stop_after_n_instructions(-1)
        assert vm.exports[2](41) == 42  # the VM stays usable
        assert not vm._inst.hard_stopped()


def late_stop(vm: mvactors.VM) -> None:
    """What the ticker leaves when its write lands just after the call it meant to stop has ended."""
    vm._inst.stop_now()


@pytest.mark.parametrize("path", ["active", "python"])
def test_a_stop_that_lands_after_its_call_ended_does_not_stop_the_next_call(compile_js, path):
    with mvactors.VM.restore(compile_js(LOOP_JS), {1: lambda i: i}, time_limit=0.2) as vm:
        call = dict(both_paths(vm.exports[2]))[path]
        assert vm.get_remaining_instructions() == -1
        late_stop(vm)
        assert vm.get_remaining_instructions() == -1  # the counter's real value, while the 0 sits there
        assert call(1) == 2
        assert vm.get_remaining_instructions() == -1  # the entry put it back
        assert vm.exports[3](100) == sum(range(100)) & 4095


def test_a_late_stop_keeps_a_gas_budget_and_its_exhaustion(compile_js):
    with mvactors.VM.restore(compile_js(LOOP_JS), {1: lambda i: i}, time_limit=0.2) as vm:
        vm.stop_after_n_instructions(5000)
        assert vm.exports[3](10) == sum(range(10))
        left = vm.get_remaining_instructions()
        assert 0 < left < 5000
        late_stop(vm)
        assert vm.get_remaining_instructions() == left
        assert vm.exports[2](1) == 2  # not stopped, and the budget is the one it had
        assert 0 < vm.get_remaining_instructions() < left
        with pytest.raises(GasExhausted):  # the budget still runs out as gas, not as a stop
            vm.exports[1]()
        vm.stop_after_n_instructions(-1)
        assert vm.exports[2](1) == 2


def test_a_budget_set_after_a_late_stop_is_the_budget(compile_js):
    with mvactors.VM.restore(compile_js(LOOP_JS), {1: lambda i: i}, time_limit=0.2) as vm:
        late_stop(vm)
        vm.stop_after_n_instructions(0)  # a budget of nothing: the next call stops at once, as gas
        with pytest.raises(GasExhausted):
            vm.exports[2](1)
        vm.stop_after_n_instructions(-1)
        assert vm.exports[2](1) == 2


def test_a_late_stop_on_one_vm_leaves_another_alone(compile_js):
    data = compile_js(LOOP_JS)
    with mvactors.VM.restore(data, {1: lambda i: i}, time_limit=0.2) as a, \
            mvactors.VM.restore(data, {1: lambda i: i}, time_limit=0.2) as b:
        late_stop(a)
        assert b.exports[2](1) == 2
        assert a.exports[2](1) == 2


def test_a_write_from_another_thread_stops_a_running_loop(compile_js):
    # The interpreter reads the counter from memory before every instruction (a volatile
    # read, engine/build.py): a write by another thread while the loop runs ends it.  The
    # time limit is far away, so only this thread's write can end the call.
    entered = threading.Event()
    errors: list[BaseException] = []
    vm = mvactors.VM.restore(compile_js(LOOP_JS), {1: lambda i: entered.set()}, time_limit=600)
    inst = vm._inst

    def stopper() -> None:
        try:
            assert entered.wait(30), "the guest never reached its loop"
            inst.stop_now()  # takes the GIL: runs while the guest loops (or as its host call returns)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=stopper)
    thread.start()
    try:
        with pytest.raises(TimeLimitExceeded, match=r"time limit of 600 s"):
            vm.exports[4]()
    finally:
        thread.join(30)
        vm.close()
    assert not errors and not thread.is_alive()


def test_a_stop_inside_a_reentrant_call_of_the_same_vm(compile_js):
    # A host function calls back into its own VM, and that inner entry loops: the inner entry
    # is stopped (an entry of its own, timed from its start).  As with the epoch trap, the host
    # function sees TimeLimitExceeded and the outer call finds its VM dead (VMUnusable).
    box: dict[str, Any] = {}
    inner: list[BaseException] = []

    def host(n: int) -> int:
        if n != 7:
            return n
        try:
            return box["vm"].exports[1]()
        except BaseException as exc:
            inner.append(exc)
            raise

    vm = box["vm"] = mvactors.VM.restore(compile_js(LOOP_JS), {1: host}, time_limit=0.2)
    started = time.monotonic()
    with pytest.raises(VMUnusable, match=r"the VM is unusable after a fatal error: the hard stop ended a call"):
        vm.exports[5](7)
    assert time.monotonic() - started < 3
    assert len(inner) == 1 and str(inner[0]) == STOPPED and isinstance(inner[0], TimeLimitExceeded)
    with pytest.raises(VMUnusable):
        vm.exports[2](1)
    vm.close()


def test_a_host_function_that_outlasts_the_limit_is_not_stopped_after_it_returns(compile_js):
    # The ticker skips a call while its host function runs (call_depth above entry_depth):
    # nothing may be left in the counter to end the guest when the host function returns.
    data = compile_js(LOOP_JS)
    hard_stop = _wasm.WasmEngine.get().hard_stop
    assert hard_stop is not None

    def slow(n: int) -> int:
        ticks = hard_stop.ticks
        deadline = time.monotonic() + 30
        # 0.4 s of ticks, twice the limit, spent in Python (the interpreter's switch interval
        # hands the GIL to the ticker while this spins).
        while hard_stop.ticks < ticks + 40:
            assert time.monotonic() < deadline, "the ticker stopped ticking"
        return n

    with mvactors.VM.restore(data, {1: slow}, time_limit=0.2) as vm:
        stops = hard_stop.stops
        assert vm.exports[5](3) == 3
        assert hard_stop.stops == stops
        assert vm.exports[3](10) == sum(range(10))


def test_a_vm_without_a_time_limit_ignores_the_stop_word(compile_js):
    with mvactors.VM.restore(compile_js(LOOP_JS), {1: lambda i: i}, time_limit=None) as vm:
        vm.stop_after_n_instructions(100)
        with pytest.raises(GasExhausted):
            vm.exports[1]()
        vm.stop_after_n_instructions(-1)
        assert vm.exports[2](1) == 2


def test_calls_ending_around_the_limit_never_stop_the_call_after_them(compile_js):
    # The real race: a call that ends within a tick of its limit may end while the ticker
    # writes its 0.  Whatever happened to it, the trivial call right after must run.
    data = compile_js(LOOP_JS)
    limit = 0.05
    vm = mvactors.VM.restore(data, {1: lambda i: i}, time_limit=limit)
    try:
        n = 2000
        while True:  # calibrate: iterations taking about a tenth of the limit
            started = time.thread_time()
            vm.exports[3](n)
            if time.thread_time() - started >= limit / 10 or n >= 2**22:
                break
            n *= 2
        per_limit = n * 10
        stopped = finished = 0
        for i in range(24):
            count = int(per_limit * (0.8 + 0.4 * i / 23))  # 0.8x to 1.2x of the limit
            try:
                vm.exports[3](count)
                finished += 1
            except TimeLimitExceeded:
                stopped += 1
                vm.close()
                vm = mvactors.VM.restore(data, {1: lambda i: i}, time_limit=limit)
            assert vm.exports[2](i) == i + 1  # never stopped: it runs for microseconds
    finally:
        vm.close()
    assert stopped + finished == 24

"""Async host imports and guest async functions, on anyio's asyncio and trio backends."""

from __future__ import annotations

import functools

import anyio
import pytest

import mvactors
from mvactors import GuestError, MicroviumError

pytestmark = pytest.mark.anyio

# Export IDs of tests/guest/async.js
ECHO_VIA, SUM_VIA, CATCH_FAILURE, UNCAUGHT_FAILURE = 1, 2, 3, 4
GUEST_THROWS_AFTER_AWAIT, GUEST_THROWS_IMMEDIATELY, NO_AWAIT_INSIDE = 5, 6, 7
FIRE_AND_FORGET, MIXED, OBJECT_THROUGH_AWAIT = 8, 9, 10

TIMEOUT = 5


class Host:
    """Async imports whose completion the test controls with events."""

    def __init__(self) -> None:
        self.calls: list[object] = []
        self.gates: dict[object, anyio.Event] = {}
        self.started: dict[object, anyio.Event] = {}
        self.notified: list[object] = []
        self._notify_done: anyio.Event | None = None  # created inside the event loop

    @property
    def notify_done(self) -> anyio.Event:
        if self._notify_done is None:
            self._notify_done = anyio.Event()
        return self._notify_done

    def gate(self, key: object) -> anyio.Event:
        self.gates[key] = anyio.Event()
        self.started[key] = anyio.Event()
        return self.gates[key]

    async def echo_later(self, x):
        self.calls.append(x)
        key = x if not hasattr(x, "to_python") else None
        if key in self.gates:
            self.started[key].set()
            await self.gates[key].wait()
        else:
            await anyio.sleep(0)  # a real suspension point
        return x

    async def fail_later(self, message):
        await anyio.sleep(0)
        raise ValueError(message)

    async def notify(self, x):
        await anyio.sleep(0)
        self.notified.append(x)
        self.notify_done.set()

    def imports(self) -> dict[int, object]:
        return {10: self.echo_later, 11: self.fail_later, 12: self.notify, 1: lambda x: x * 10}


@pytest.fixture
def host() -> Host:
    return Host()


@pytest.fixture
def vm(make_vm, host):
    return make_vm("async", host.imports())


async def test_async_import_result_resolves_the_guest_promise(vm, host):
    async with vm:
        with anyio.fail_after(TIMEOUT):
            pending = vm.exports[ECHO_VIA]("hi")
            assert await pending == "hi"
    assert host.calls == ["hi"]


async def test_await_call_result_directly(vm):
    """The natural spelling: `await vm.exports[n](...)` without holding the awaitable."""
    async with vm:
        with anyio.fail_after(TIMEOUT):
            assert await vm.exports[ECHO_VIA](5) == 5
            assert await vm.exports[NO_AWAIT_INSIDE](4) == 8


async def test_sequential_awaits(vm, host):
    async with vm:
        with anyio.fail_after(TIMEOUT):
            pending = vm.exports[SUM_VIA](20, 22)
            assert await pending == 42
    assert host.calls == [20, 22]


async def test_guest_is_suspended_until_the_host_completes(vm, host):
    gate = host.gate("slow")
    async with vm:
        with anyio.fail_after(TIMEOUT):
            pending = vm.exports[ECHO_VIA]("slow")
            await host.started["slow"].wait()  # the host coroutine runs...
            assert host.calls == ["slow"]
            gate.set()  # ...and the guest resumes only when it finishes
            assert await pending == "slow"


async def test_concurrent_guest_calls_complete_in_host_order(vm, host):
    gate_a, gate_b = host.gate("a"), host.gate("b")
    results: list[str] = []
    async with vm:
        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as tg:

                async def run(x: str) -> None:
                    pending = vm.exports[ECHO_VIA](x)
                    results.append(await pending)

                tg.start_soon(run, "a")
                tg.start_soon(run, "b")
                await host.started["a"].wait()
                await host.started["b"].wait()
                gate_b.set()
                while not results:
                    await anyio.sleep(0)
                assert results == ["b"]
                gate_a.set()
    assert results == ["b", "a"]


async def test_host_exception_rejects_with_name_and_message(vm):
    async with vm:
        with anyio.fail_after(TIMEOUT):
            pending = vm.exports[CATCH_FAILURE]("disk on fire")
            assert await pending == "ValueError: disk on fire"


async def test_uncaught_host_rejection_becomes_guest_error(vm):
    async with vm:
        with anyio.fail_after(TIMEOUT):
            pending = vm.exports[UNCAUGHT_FAILURE]("nope")
            with pytest.raises(GuestError) as info:
                await pending
        value = info.value.value
        assert value.name == "ValueError"
        assert value.message == "nope"
        assert value.to_python() == {"name": "ValueError", "message": "nope"}


async def test_guest_rejection_after_await_raises_guest_error(vm):
    async with vm:
        with anyio.fail_after(TIMEOUT):
            pending = vm.exports[GUEST_THROWS_AFTER_AWAIT]("late")
            with pytest.raises(GuestError) as info:
                await pending
    assert info.value.value == "late"


async def test_guest_rejection_before_any_await_raises_guest_error(vm):
    async with vm:
        with anyio.fail_after(TIMEOUT):
            pending = vm.exports[GUEST_THROWS_IMMEDIATELY]({"code": 3})
            with pytest.raises(GuestError) as info:
                await pending
        assert info.value.value.code == 3


async def test_async_function_without_await_inside(vm):
    async with vm:
        with anyio.fail_after(TIMEOUT):
            pending = vm.exports[NO_AWAIT_INSIDE](21)
            assert await pending == 42


async def test_sync_and_async_imports_mixed(vm):
    async with vm:
        with anyio.fail_after(TIMEOUT):
            pending = vm.exports[MIXED](4)
            assert (await pending).to_python() == [40, 40]


async def test_objects_through_async_results(vm):
    async with vm:
        with anyio.fail_after(TIMEOUT):
            pending = vm.exports[OBJECT_THROUGH_AWAIT]()
            assert await pending == 2


async def test_fire_and_forget_host_work_runs_in_the_vm_scope(vm, host):
    async with vm:
        assert vm.exports[FIRE_AND_FORGET]("ping") == "started"
        with anyio.fail_after(TIMEOUT):
            await host.notify_done.wait()
    assert host.notified == ["ping"]


async def test_async_with_waits_for_pending_host_work(vm, host):
    async with vm:
        assert vm.exports[FIRE_AND_FORGET]("bye") == "started"
    # Leaving `async with vm:` ran the host task to completion (task-group semantics).
    assert host.notified == ["bye"]


async def test_async_import_wrapper_for_non_coroutine_callables(make_vm):
    async def scaled(factor, x):
        await anyio.sleep(0)
        return x * factor

    host = Host()
    imports = host.imports()
    imports[10] = mvactors.async_import(functools.partial(scaled, 3))
    vm = make_vm("async", imports)
    async with vm:
        with anyio.fail_after(TIMEOUT):
            pending = vm.exports[ECHO_VIA](14)
            assert await pending == 42


async def test_async_host_returning_unsupported_value_rejects(make_vm):
    async def bad(x):
        return object()

    host = Host()
    imports = host.imports()
    imports[10] = bad
    vm = make_vm("async", imports)
    async with vm:
        with anyio.fail_after(TIMEOUT):
            pending = vm.exports[ECHO_VIA](1)
            with pytest.raises((GuestError, TypeError, MicroviumError)):
                await pending


async def test_many_round_trips(vm, host):
    async with vm:
        with anyio.fail_after(TIMEOUT * 2):
            for i in range(200):
                pending = vm.exports[SUM_VIA](i, 1)
                assert await pending == i + 1
    assert len(host.calls) == 400


async def test_vm_usable_for_sync_calls_while_async_work_is_pending(vm, host):
    gate = host.gate("held")
    async with vm:
        with anyio.fail_after(TIMEOUT):
            pending = vm.exports[ECHO_VIA]("held")
            await host.started["held"].wait()
            assert vm.exports[FIRE_AND_FORGET]("meanwhile") == "started"
            gate.set()
            assert await pending == "held"
            await host.notify_done.wait()


async def test_closed_vm_after_async_with(vm):
    async with vm:
        with anyio.fail_after(TIMEOUT):
            pending = vm.exports[ECHO_VIA](1)
            assert await pending == 1
    with pytest.raises(MicroviumError):
        vm.exports[ECHO_VIA](2)


async def test_async_with_body_exception_propagates_and_closes(vm):
    # The body's exception comes out, possibly wrapped in an exception group by the task group.
    with pytest.raises((KeyError, BaseExceptionGroup)) as info:
        async with vm:
            raise KeyError("boom")
    if isinstance(info.value, BaseExceptionGroup):
        matched, rest = info.value.split(KeyError)
        assert matched is not None and rest is None
    with pytest.raises(MicroviumError):
        vm.exports[NO_AWAIT_INSIDE](1)


async def test_two_vms_async_independently(make_vm):
    a_host, b_host = Host(), Host()
    a = make_vm("async", a_host.imports())
    b = make_vm("async", b_host.imports())
    async with a, b:
        with anyio.fail_after(TIMEOUT):
            pa = a.exports[SUM_VIA](1, 2)
            pb = b.exports[SUM_VIA](10, 20)
            assert await pb == 30
            assert await pa == 3
    assert a_host.calls == [1, 2]
    assert b_host.calls == [10, 20]

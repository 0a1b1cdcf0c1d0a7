"""A timed-out or cancelled guest call does not leave host calls running (or `async with vm` waiting)."""

from __future__ import annotations

import asyncio
import gc
import warnings

import anyio
import pytest

import mvactors
from mvactors import VirtualClock

GUEST = """
const fetch = vmImport(1);
const log = vmImport(2);
vmExport(1, async (key) => {
  const v = await fetch(key);
  log("fetched " + v);
  return v;
});
"""


class SlowHost:
    """fetch() takes `delay` seconds of virtual time; records what happened to each call."""

    def __init__(self, clock: VirtualClock, delay: float) -> None:
        self.clock = clock
        self.delay = delay
        self.events: list[str] = []

    async def fetch(self, key: str) -> str:
        try:
            await self.clock.sleep_until(self.clock.now() + self.delay)
        except anyio.get_cancelled_exc_class():
            self.events.append(f"host call {key} cancelled at {self.clock.now()}")
            raise
        return key

    def log(self, text: str) -> None:
        self.events.append(f"guest: {text}")


async def with_virtual_timeout(clock: VirtualClock, seconds: float, awaitable) -> None:
    """Await ``awaitable`` for at most ``seconds`` of virtual time (then give up, quietly)."""
    async with anyio.create_task_group() as tg:
        async def deadline() -> None:
            await clock.sleep_until(clock.now() + seconds)
            tg.cancel_scope.cancel()

        tg.start_soon(deadline)
        await awaitable
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_a_timeout_bounds_latency_on_the_virtual_clock(compile_js):
    clock = VirtualClock()
    host = SlowHost(clock, delay=5.0)
    with anyio.fail_after(30):  # wall-clock guard: without the fix the exit waits for the host call
        async with anyio.create_task_group() as driver:
            driver.start_soon(clock.drive)
            async with mvactors.VM.restore(compile_js(GUEST), {1: host.fetch, 2: host.log}) as vm:
                await with_virtual_timeout(clock, 0.5, vm.exports[1]("slow"))
            left_at = clock.now()
            driver.cancel_scope.cancel()
    assert left_at == 0.5  # not 5: leaving `async with vm` did not wait for the host call
    assert host.events == ["host call slow cancelled at 0.5"]


@pytest.mark.anyio
async def test_a_host_call_another_awaiter_needs_keeps_running(compile_js):
    clock = VirtualClock()
    host = SlowHost(clock, delay=5.0)
    with anyio.fail_after(30):
        async with anyio.create_task_group() as driver:
            driver.start_soon(clock.drive)
            async with mvactors.VM.restore(compile_js(GUEST), {1: host.fetch, 2: host.log}) as vm:
                promise = vm.exports[1]("shared")
                async with anyio.create_task_group() as tg:
                    results = []

                    async def patient() -> None:
                        results.append(await promise)

                    tg.start_soon(patient)
                    await with_virtual_timeout(clock, 0.5, promise)
            driver.cancel_scope.cancel()
    assert results == ["shared"] and clock.now() == 5.0
    assert host.events == ["guest: fetched shared"]


async def _hangs_forever() -> None:
    await anyio.Event().wait()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_asyncio_wait_for_cancels_the_host_call(compile_js):
    cancelled = []

    async def fetch(key: str) -> str:
        try:
            await _hangs_forever()
        finally:
            cancelled.append(key)
        return key

    with anyio.fail_after(30):
        async with mvactors.VM.restore(compile_js(GUEST), {1: fetch, 2: lambda _text: None}) as vm:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(vm.exports[1]("never"), 0.01)
    assert cancelled == ["never"]


def test_a_promise_dropped_without_being_awaited_warns(compile_js):
    snapshot = compile_js("vmExport(1, async () => 1);\n")
    with mvactors.VM.restore(snapshot) as vm, pytest.warns(RuntimeWarning, match=r"GuestPromise .* was never awaited"):
        vm.exports[1]()  # the promise is dropped at once
        gc.collect()


@pytest.mark.anyio
async def test_awaited_or_inspected_promises_do_not_warn(compile_js):
    snapshot = compile_js("vmExport(1, async () => 1);\n")
    async with mvactors.VM.restore(snapshot) as vm:
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            assert await vm.exports[1]() == 1
            assert vm.exports[1]().state == "fulfilled"
            gc.collect()

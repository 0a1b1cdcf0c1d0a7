"""Gas: a turn that runs out pauses the actor, rolls its heap back, and re-runs on resume."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from runtime_support import (
    FAIL,
    FETCH_THEN_SPIN,
    GET_COUNT,
    GET_STATE,
    INCREMENT,
    SPIN,
    TIMEOUT,
    Host,
    wait_until,
)

import mvactors
from mvactors import GasPolicy, GuestError, HostCallRecord, MicroviumError, PauseEvent

pytestmark = pytest.mark.anyio

SPIN_400 = 79800  # sum(range(400)), what spin(400) adds


class Pauses:
    """on_pause hook: records events and lets a test wait for the n-th pause."""

    def __init__(self) -> None:
        self.events: list[tuple[str, PauseEvent]] = []
        self._waiting: tuple[int, anyio.Event] | None = None

    def __call__(self, actor: mvactors.Actor, event: PauseEvent) -> None:
        self.events.append((actor.id, event))
        if self._waiting is not None and len(self.events) >= self._waiting[0]:
            self._waiting[1].set()

    async def wait(self, n: int) -> None:
        if len(self.events) < n:
            event = anyio.Event()
            self._waiting = (n, event)
            await event.wait()


async def run_unlimited(rt_actor: bytes, script: list[tuple[Any, ...]]) -> tuple[list[Any], Any]:
    """Results of ``script``'s calls and the final guest state, without any gas limit."""
    host = Host()
    async with mvactors.Runtime() as rt:
        actor = await rt.spawn(rt_actor, host.imports("u"))
        results = [await actor.call(*step) for step in script]
        return results, await actor.call(GET_STATE)


async def test_pause_rolls_back_and_resume_matches_an_uninterrupted_run(rt_actor):
    script = [(SPIN, 5), (INCREMENT, 2), (SPIN, 400), (INCREMENT, 1), (SPIN, 3)]
    expected_results, expected_state = await run_unlimited(rt_actor, script)

    host, pauses = Host(), Pauses()
    async with mvactors.Runtime(on_pause=pauses) as rt:
        actor = await rt.spawn(rt_actor, host.imports("g"), gas=GasPolicy(per_turn=1500))
        results: dict[int, Any] = {}
        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as tg:

                async def call(i: int) -> None:
                    results[i] = await actor.call(*script[i])

                for i in range(2):
                    await call(i)
                tg.start_soon(call, 2)  # runs out of gas
                await pauses.wait(1)
                assert actor.state == "paused"
                pause = actor.pause
                assert pause is not None and pause.reason == "per_turn" and pause.gas_budget == 1500
                assert pause.message == "call of export 4"
                # The aborted turn's synchronous host call is reported (its effect is not undone).
                assert pause.host_calls == (HostCallRecord(1, ("spin", 400, 12)),)
                assert host.kinds("spin")[-1] == ("g", "spin", 400, 12)
                assert not host.kinds("spun", "g")[2:]
                # More mail queues behind the paused turn; the caller keeps waiting.
                tg.start_soon(call, 3)
                await anyio.wait_all_tasks_blocked()
                assert 2 not in results and 3 not in results
                assert actor.mailbox_depth == 2
                assert rt.stats()["paused"] == 1
                await actor.resume(10_000)
            await call(4)
            state = await actor.call(GET_STATE)
            assert actor.state == "idle" and actor.pause is None
    assert [results[i] for i in range(len(script))] == expected_results
    assert state == expected_state  # history has 400 once: the partial turn left nothing behind
    assert actor.metrics.pauses == 1 and rt.stats()["pauses"] == 1


async def test_pause_during_a_completion_turn(rt_actor):
    """A host call's completion that runs out of gas is rolled back and re-delivered on resume."""
    _, expected_state = await run_unlimited(rt_actor, [(FETCH_THEN_SPIN, "k", 400)])
    host, pauses = Host(), Pauses()
    async with mvactors.Runtime(on_pause=pauses) as rt:
        actor = await rt.spawn(rt_actor, host.imports("g"), gas=GasPolicy(per_turn=1500))
        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as tg:
                result: list[int] = []

                async def call() -> None:
                    result.append(await actor.call(FETCH_THEN_SPIN, "k", 400))

                tg.start_soon(call)
                await pauses.wait(1)
                assert actor.pause is not None and actor.pause.message.startswith("completion of async host call")
                await actor.resume(10_000)
            assert result == [SPIN_400]
            assert await actor.call(GET_STATE) == expected_state
        assert host.fetches == [("g", "k")]  # the host call itself is not repeated


async def test_resume_without_extra_gas_pauses_again(rt_actor):
    host, pauses = Host(), Pauses()
    async with mvactors.Runtime(on_pause=pauses) as rt:
        actor = await rt.spawn(rt_actor, host.imports("g"), gas=GasPolicy(per_turn=1500))
        with anyio.fail_after(TIMEOUT):
            await actor.send(SPIN, 400)
            await pauses.wait(1)
            await actor.resume()  # same budget: the same turn runs out again
            await pauses.wait(2)
            assert actor.state == "paused"
            with pytest.raises(ValueError):
                await actor.resume(-5)
            await actor.resume(20_000)
            assert await actor.call(GET_COUNT) == SPIN_400
        with pytest.raises(MicroviumError):
            await actor.resume()  # not paused


async def test_quota_exhaustion_pauses_and_extra_gas_continues(rt_actor):
    host, pauses = Host(), Pauses()
    async with mvactors.Runtime(on_pause=pauses) as rt:
        actor = await rt.spawn(rt_actor, host.imports("q"), gas=GasPolicy(quota=3000))
        other = await rt.spawn(rt_actor, host.imports("o"))
        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as tg:
                done: list[int] = []

                async def run() -> None:
                    for _ in range(5):
                        done.append(await actor.call(SPIN, 50))  # ~1000 instructions each

                tg.start_soon(run)
                await pauses.wait(1)
                assert actor.pause is not None and actor.pause.reason == "quota"
                assert len(done) < 5
                assert actor.metrics.gas_used <= 3000
                assert await other.call(INCREMENT, 1) == 1  # other actors are unaffected
                await actor.resume(10_000)
            assert done == [1225 * i for i in range(1, 6)]


async def test_failing_turns_count_against_the_quota(rt_actor):
    """A guest that throws still spends gas: it cannot run forever on a finite quota."""
    host, pauses = Host(), Pauses()
    async with mvactors.Runtime(on_pause=pauses) as rt:
        actor = await rt.spawn(rt_actor, host.imports("q"), gas=GasPolicy(quota=500))
        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as tg:

                async def run() -> None:
                    for _ in range(1000):
                        with pytest.raises(GuestError):
                            await actor.call(FAIL, "again")

                tg.start_soon(run)
                await pauses.wait(1)
                assert actor.pause is not None and actor.pause.reason == "quota"
                assert 0 < actor.metrics.gas_used <= 500
                tg.cancel_scope.cancel()


async def test_gas_limits_are_per_actor(rt_actor):
    host, pauses = Host(), Pauses()
    async with mvactors.Runtime(on_pause=pauses) as rt:
        tight = await rt.spawn(rt_actor, host.imports("t"), gas=GasPolicy(per_turn=1500))
        loose = await rt.spawn(rt_actor, host.imports("l"), gas=GasPolicy(per_turn=100_000))
        with anyio.fail_after(TIMEOUT):
            await tight.send(SPIN, 400)
            assert await loose.call(SPIN, 400) == SPIN_400
            await pauses.wait(1)
            assert [e[0] for e in pauses.events] == [tight.id]
            assert loose.state == "idle" and tight.state == "paused"


async def test_async_pause_hook_can_grant_more_gas(rt_actor):
    """A supervisor as an async on_pause hook: the caller never notices the pause."""
    events: list[PauseEvent] = []

    async def supervisor(actor: mvactors.Actor, event: PauseEvent) -> None:
        events.append(event)
        await actor.resume(event.gas_budget * 100)

    host = Host()
    async with mvactors.Runtime(on_pause=supervisor) as rt:
        actor = await rt.spawn(rt_actor, host.imports("g"), gas=GasPolicy(per_turn=1500))
        with anyio.fail_after(TIMEOUT):
            assert await actor.call(SPIN, 400) == SPIN_400
            assert await actor.call(SPIN, 400) == 2 * SPIN_400
        assert len(events) == 2 and actor.metrics.pauses == 2


async def test_pause_hook_errors_surface_from_the_runtime(rt_actor):
    def broken(actor: mvactors.Actor, event: PauseEvent) -> None:
        raise RuntimeError("supervisor bug")

    host = Host()
    with pytest.raises(RuntimeError, match="supervisor bug"):  # a lone failure is not wrapped in a group
        async with mvactors.Runtime(on_pause=broken) as rt:
            actor = await rt.spawn(rt_actor, host.imports("g"), gas=GasPolicy(per_turn=1500))
            with anyio.fail_after(TIMEOUT):
                await actor.call(SPIN, 400)


# ---- property: metering, pausing and hibernating never change what a guest computes ----

step = st.one_of(
    st.tuples(st.just(INCREMENT), st.integers(-5, 5)),
    st.tuples(st.just(SPIN), st.integers(0, 120)),
    st.tuples(st.just(FETCH_THEN_SPIN), st.sampled_from(["a", "b"]), st.integers(0, 120)),
    st.just(("hibernate",)),
)


async def run_script(rt_actor: bytes, script: list[tuple[Any, ...]], gas: GasPolicy | None,
                     max_resident: int | None) -> tuple[list[Any], Any, int]:
    """Send every step, resuming pauses with ample gas; returns results, final state and pauses."""
    host = Host()
    host.values.update(a=3, b=4)
    pauses = 0

    async def supervisor(actor: mvactors.Actor, event: PauseEvent) -> None:
        nonlocal pauses
        pauses += 1
        await actor.resume(10**6)

    async with mvactors.Runtime(on_pause=supervisor, max_resident=max_resident) as rt:
        actor = await rt.spawn(rt_actor, host.imports("p"), gas=gas)
        await rt.spawn(rt_actor, host.imports("other"))  # competes for residency
        results: dict[int, Any] = {}
        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as tg:

                async def call(i: int, s: tuple[Any, ...], *, task_status: Any) -> None:
                    task_status.started()
                    # Queued before this task first yields (the mailbox is unbounded), so before
                    # the next step: mailbox order is script order on both backends.
                    results[i] = await actor.call(*s)

                for i, s in enumerate(script):
                    if s[0] == "hibernate":
                        await actor.hibernate()
                    else:
                        await tg.start(call, i, s)
                        if s[0] == FETCH_THEN_SPIN:
                            # When a host call completes relative to later mail is up to the
                            # event loop; wait for it so both runs see the same order.
                            await wait_until(lambda i=i: i in results)
            state = await actor.call(GET_STATE)
        return [results[i] for i in sorted(results)], state, pauses


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=st.lists(step, max_size=8), per_turn=st.integers(100, 3000), max_resident=st.sampled_from([None, 1]))
def test_gas_pauses_and_hibernation_do_not_change_results(rt_actor, backend, script, per_turn, max_resident):
    expected = anyio.run(run_script, rt_actor, script, None, None, backend=backend)
    got = anyio.run(run_script, rt_actor, script, GasPolicy(per_turn=per_turn), max_resident, backend=backend)
    assert got[:2] == expected[:2]
    assert expected[2] == 0


async def test_per_turn_extra_gas_does_not_raise_the_quota(rt_actor):
    host, pauses = Host(), Pauses()
    async with mvactors.Runtime(on_pause=pauses) as rt:
        actor = await rt.spawn(rt_actor, host.imports("g"), gas=GasPolicy(per_turn=1500, quota=12_000))
        with anyio.fail_after(TIMEOUT):
            await actor.send(SPIN, 400)  # ~7,650 instructions: over the per-turn budget
            await pauses.wait(1)
            assert actor.pause is not None and actor.pause.reason == "per_turn"
            await actor.resume(10_000)
            assert await actor.call(GET_COUNT) == SPIN_400
            left = actor.quota_left
            assert left is not None and 0 < left < 12_000 - 7_000
            await actor.send(SPIN, 400)
            await pauses.wait(2)
            assert actor.pause is not None and actor.pause.reason == "per_turn"
            await actor.resume(10_000)  # more than the quota left: it runs out of quota instead
            await pauses.wait(3)
            assert actor.pause is not None and actor.pause.reason == "quota"
            assert actor.pause.gas_budget == left
            with pytest.raises(ValueError):
                await actor.resume(2**31)
            await actor.resume(10_000)  # a quota pause: extra gas raises the quota
            assert await actor.call(GET_COUNT) == 2 * SPIN_400


async def test_a_paused_actor_can_hibernate_and_resume_from_the_record(rt_actor):
    host, pauses = Host(), Pauses()
    async with mvactors.Runtime(on_pause=pauses) as rt:
        actor = await rt.spawn(rt_actor, host.imports("g"), gas=GasPolicy(per_turn=1500))
        with anyio.fail_after(TIMEOUT):
            assert await actor.call(INCREMENT, 3) == 3
            await actor.send(SPIN, 400)
            await pauses.wait(1)
            await actor.hibernate()
            assert actor.state == "paused" and rt.resident_count == 0
            assert rt.stats()["hibernated"] == 1 and rt.stats()["paused"] == 1
            await actor.resume(20_000)
            assert await actor.call(GET_STATE) == [3 + SPIN_400, [400]]
        assert actor.metrics.rehydrations == 1


async def test_a_paused_call_that_times_out_is_never_applied(rt_actor):
    host, pauses = Host(), Pauses()
    async with mvactors.Runtime(on_pause=pauses) as rt:
        actor = await rt.spawn(rt_actor, host.imports("g"), gas=GasPolicy(per_turn=1500))
        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as tg:
                timed_out = anyio.Event()

                async def impatient() -> None:
                    with pytest.raises(TimeoutError):
                        await actor.call(SPIN, 400, timeout=0.05)
                    timed_out.set()

                tg.start_soon(impatient)
                await pauses.wait(1)
                await actor.send(INCREMENT, 1)
                await timed_out.wait()
            assert actor.mailbox_depth == 1 and actor.state == "paused"
            await actor.resume(20_000)  # goes on with the next message
            assert await actor.call(GET_STATE) == [1, []]


async def test_gas_refill_resumes_a_quota_paused_actor_on_the_runtime_clock():
    source = "vmExport(1, (n) => { let i = 0; let s = 0; while (i < n) { s += i; i++; } return s; });"
    snapshot = mvactors.compile(source)
    pauses = []
    async with mvactors.Runtime(clock="virtual", on_pause=lambda actor, event: pauses.append(event)) as rt:
        policy = mvactors.GasPolicy(quota=20_000, refill_per_second=10_000)
        actor = await rt.spawn(snapshot, gas=policy)
        assert await actor.call(1, 1000) == sum(range(1000))
        left = actor.quota_left
        assert left is not None and left < 10_000  # the second call cannot fit
        started = rt.clock.now()
        assert await actor.call(1, 1000) == sum(range(1000))  # paused, then resumed by the refill
        assert [p.reason for p in pauses] == ["quota"]
        waited = rt.clock.now() - started
        assert waited == pytest.approx((20_000 - left) / 10_000)  # until the bucket was full again


def test_gas_refill_needs_a_quota():
    with pytest.raises(ValueError, match="set quota"):
        mvactors.GasPolicy(per_turn=1000, refill_per_second=10)

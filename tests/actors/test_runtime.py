"""Runtime and actors: turn ordering, async host calls, errors, backpressure, timeouts, metrics.

Every test runs on asyncio and trio (the ``anyio_backend`` fixture in conftest.py).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from typing import Any

import anyio
import pytest
from runtime_support import (
    ALLOCATE,
    ECHO,
    FAIL,
    FAIL_LATER,
    FETCH_ADD,
    FETCH_THEN_ALLOCATE,
    GET_COUNT,
    GET_STATE,
    HANDLE,
    INCREMENT,
    NAP,
    SPIN,
    TIMEOUT,
    wait_until,
)

import mvactors
from mvactors import (
    ActorFailed,
    ExportNotFound,
    GasPolicy,
    GuestError,
    HostFunctionError,
    MailboxFull,
    MicroviumError,
    VMUnusable,
)

pytestmark = pytest.mark.anyio


def check_turns(trace: list[tuple[Any, ...]], actor_id: str, senders: int, per_sender: int) -> None:
    """Enter/exit strictly alternate for the same message; each sender's messages arrive in order."""
    events = [t for t in trace if t[0] == actor_id and t[1] in ("enter", "exit")]
    assert len(events) == 2 * senders * per_sender
    seen: dict[Any, list[int]] = defaultdict(list)
    for enter, exit_ in zip(events[::2], events[1::2], strict=True):
        assert enter[1] == "enter" and exit_[1] == "exit", (enter, exit_)
        assert enter[2:] == exit_[2:], (enter, exit_)
        seen[enter[2]].append(enter[3])
    assert seen == {s: list(range(per_sender)) for s in range(senders)}


# ---- ordering ----


@pytest.mark.parametrize("mailbox_size", [None, 3])
async def test_turns_never_overlap_and_each_senders_messages_stay_in_order(rt_actor, host, mailbox_size):
    senders, per_sender, actors = 6, 15, 3
    async with mvactors.Runtime(mailbox_size=mailbox_size) as rt:
        running: dict[str, bool] = defaultdict(bool)
        overlaps: list[tuple[str, Any]] = []

        def spawn_imports(actor_id: str) -> dict[int, Any]:
            imports = host.imports(actor_id)
            trace = imports[1]

            def guarded(kind: str, a: Any = None, b: Any = None) -> None:
                # Any actor running while another's turn is open, or re-entry, is an overlap.
                if kind == "enter":
                    if any(running.values()):
                        overlaps.append((actor_id, a))
                    running[actor_id] = True
                elif kind == "exit":
                    running[actor_id] = False
                trace(kind, a, b)

            imports[1] = guarded
            return imports

        group = [await rt.spawn(rt_actor, spawn_imports(f"a{i}"), actor_id=f"a{i}") for i in range(actors)]
        results: dict[tuple[str, int], list[int]] = defaultdict(list)

        async def sender(actor: mvactors.Actor, s: int) -> None:
            for seq in range(per_sender):
                if s % 2:
                    await actor.send(HANDLE, s, seq)
                else:  # callers see the counter after their own turn
                    results[(actor.id, s)].append(await actor.call(HANDLE, s, seq))

        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as tg:
                for actor in group:
                    for s in range(senders):
                        tg.start_soon(sender, actor, s)
            for actor in group:
                assert await actor.call(GET_COUNT) == senders * per_sender
    assert not overlaps
    for actor in group:
        check_turns(host.trace, actor.id, senders, per_sender)
    for values in results.values():
        assert values == sorted(values) and len(set(values)) == len(values)
    # Different actors' turns interleave (round-robin), not one mailbox after another.
    order = [t[0] for t in host.trace if t[1] == "enter"]
    switches = sum(1 for a, b in itertools.pairwise(order) if a != b)
    assert switches >= len(order) // 2


async def test_call_returns_plain_copies_of_guest_values(rt_actor, host):
    async with mvactors.Runtime() as rt:
        actor = await rt.spawn(rt_actor, host.imports())
        with anyio.fail_after(TIMEOUT):
            assert await actor.call(ECHO, {"a": [1, 2.5, "x", None], "b": b"\x01\x02"}) == {
                "a": [1, 2.5, "x", None], "b": b"\x01\x02"}
            assert await actor.call(SPIN, 3) == 3
            assert await actor.call(GET_STATE) == [3, [3]]
        assert rt.get(actor.id) is actor
        assert actor.state == "idle"
        with pytest.raises(KeyError):
            rt.get("nobody")


async def test_state_is_running_only_inside_a_turn(rt_actor, host):
    seen: list[str] = []
    async with mvactors.Runtime() as rt:
        actor = await rt.spawn(rt_actor, host.imports("a", i1=lambda *a: seen.append(rt.get("a").state)),
                               actor_id="a")
        with anyio.fail_after(TIMEOUT):
            assert actor.state == "idle"
            await actor.call(HANDLE, 0, 0)
            assert actor.state == "idle"
    assert seen == ["running", "running"]


# ---- async host calls ----


async def test_pending_async_host_call_lets_other_messages_through(rt_actor, host):
    async with mvactors.Runtime() as rt:
        actor = await rt.spawn(rt_actor, host.imports("a"))
        gate = host.gate("slow")
        host.values["slow"] = 100
        slow_result: list[int] = []
        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as tg:

                async def slow() -> None:
                    slow_result.append(await actor.call(FETCH_ADD, "slow"))

                tg.start_soon(slow)
                await host.started("slow").wait()
                # The actor is idle while its host call is pending and serves other messages.
                assert actor.state == "idle"
                for i in range(1, 6):
                    assert await actor.call(INCREMENT, 1) == i
                assert await actor.call(HANDLE, "x", 0) == 6
                assert not slow_result
                gate.set()
            assert slow_result == [106]
            assert await actor.call(GET_STATE) == [106, ["slow"]]


async def test_async_completions_are_turns_in_completion_order(rt_actor, host):
    async with mvactors.Runtime() as rt:
        actor = await rt.spawn(rt_actor, host.imports("a"))
        gate_a, gate_b = host.gate("a"), host.gate("b")
        host.values.update(a=1, b=10)
        done: list[tuple[str, int]] = []
        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as tg:

                async def fetch(key: str) -> None:
                    done.append((key, await actor.call(FETCH_ADD, key)))

                tg.start_soon(fetch, "a")
                await host.started("a").wait()
                tg.start_soon(fetch, "b")
                await host.started("b").wait()
                gate_b.set()
                await wait_until(lambda: bool(done))
                assert done == [("b", 10)]
                gate_a.set()
            assert done == [("b", 10), ("a", 11)]
            assert await actor.call(GET_STATE) == [11, ["b", "a"]]
        assert actor.metrics.turns == 5  # two calls, two completions, one getState


async def test_guest_async_export_rejection_fails_only_that_call(rt_actor, host):
    async with mvactors.Runtime() as rt:
        actor = await rt.spawn(rt_actor, host.imports("a"))
        with anyio.fail_after(TIMEOUT):
            with pytest.raises(GuestError) as info:
                await actor.call(FAIL_LATER, "later")
            assert info.value.value == "later"
            assert await actor.call(INCREMENT, 2) == 2
        assert actor.state == "idle"


async def test_async_host_exception_rejects_the_guest_promise(rt_actor, host):
    async def broken(key: Any) -> Any:
        raise ValueError(f"no {key}")

    async with mvactors.Runtime() as rt:
        actor = await rt.spawn(rt_actor, host.imports("a", i2=broken))
        with anyio.fail_after(TIMEOUT):
            with pytest.raises(GuestError) as info:
                await actor.call(FETCH_ADD, "k")
            assert info.value.value == {"name": "ValueError", "message": "no k"}
            assert await actor.call(GET_COUNT) == 0


# ---- bad input and failures are per actor ----


async def test_bad_input_fails_the_call_not_the_actor(rt_actor, host):
    async with mvactors.Runtime() as rt:
        actor = await rt.spawn(rt_actor, host.imports("a"))
        other = await rt.spawn(rt_actor, host.imports("b"))
        with anyio.fail_after(TIMEOUT):
            assert await actor.call(INCREMENT, 1) == 1
            with pytest.raises(ExportNotFound):
                await actor.call(999)
            with pytest.raises(TypeError):
                await actor.call(INCREMENT, object())
            with pytest.raises(TypeError):
                await actor.call("1")  # type: ignore[arg-type]
            with pytest.raises(TypeError):
                await actor.send(INCREMENT, {1: "non-str key"})
            with pytest.raises(OverflowError):
                await actor.call(ECHO, 2**60)
            with pytest.raises(GuestError) as info:
                await actor.call(FAIL, {"why": "because"})
            assert info.value.value == {"why": "because"}
            assert actor.state == "idle"
            assert await actor.call(INCREMENT, 1) == 2
            assert await other.call(GET_COUNT) == 0
        assert actor.metrics.failed_turns == 2  # bad arguments are refused before any turn


async def test_heap_exhaustion_fails_that_actor_only(rt_actor, host):
    """Unmetered, a fatal turn has no savepoint to return to (metered: see test_savepoint.py)."""
    gas = None
    async with mvactors.Runtime(store=mvactors.MemoryStore()) as rt:
        victim = await rt.spawn(rt_actor, host.imports("v"), actor_id="victim", gas=gas)
        bystander = await rt.spawn(rt_actor, host.imports("b"), actor_id="bystander", gas=gas)
        with anyio.fail_after(TIMEOUT):
            assert await bystander.call(INCREMENT, 7) == 7
            assert await victim.call(INCREMENT, 1) == 1
            with pytest.raises((VMUnusable, ActorFailed)):
                await victim.call(ALLOCATE, 100_000)
            assert victim.state == "failed"
            with pytest.raises(ActorFailed):
                await victim.call(GET_COUNT)
            with pytest.raises(ActorFailed):
                await victim.send(GET_COUNT)
            with pytest.raises(ActorFailed):
                await victim.checkpoint()
            assert await bystander.call(INCREMENT, 1) == 8
            assert rt.stats()["failed"] == 1
            assert bystander.state == "idle"


async def test_fatal_error_in_a_continuation_fails_the_caller_and_that_actor(rt_actor, host):
    async with mvactors.Runtime() as rt:
        victim = await rt.spawn(rt_actor, host.imports("v"))
        bystander = await rt.spawn(rt_actor, host.imports("b"))
        with anyio.fail_after(TIMEOUT):
            assert await victim.call(FETCH_THEN_ALLOCATE, "k", 10) == 10
            with pytest.raises((VMUnusable, ActorFailed)):
                await victim.call(FETCH_THEN_ALLOCATE, "k", 100_000)
            assert victim.state == "failed"
            assert await bystander.call(FETCH_THEN_ALLOCATE, "k", 10) == 10


async def test_fatal_error_in_a_metered_continuation_fails_only_the_caller(rt_actor, host):
    """With gas the turn has a savepoint: the VM comes back from it and the actor carries on."""
    async with mvactors.Runtime() as rt:
        victim = await rt.spawn(rt_actor, host.imports("v"), gas=GasPolicy(per_turn=10_000_000))
        with anyio.fail_after(TIMEOUT):
            assert await victim.call(FETCH_THEN_ALLOCATE, "k", 10) == 10
            with pytest.raises(VMUnusable):
                await victim.call(FETCH_THEN_ALLOCATE, "k", 100_000)
            assert victim.state == "idle"
            assert await victim.call(FETCH_THEN_ALLOCATE, "k", 10) == 10


async def test_failing_continuation_fails_the_awaiting_call(rt_actor, host):
    """An error in the turn that resumes an awaited chain reaches that chain's caller (no hang)."""

    def trace(kind: str, a: Any = None, b: Any = None) -> None:
        if kind == "woke":
            raise RuntimeError("trace store offline")

    async with mvactors.Runtime() as rt:
        actor = await rt.spawn(rt_actor, host.imports("a", i1=trace))
        with anyio.fail_after(TIMEOUT):
            with pytest.raises(HostFunctionError) as info:
                await actor.call(NAP, 0, "x")
            assert isinstance(info.value.__cause__, RuntimeError)
            assert await actor.call(INCREMENT, 1) == 2  # nap's effects before the failure stay


async def test_failed_actor_releases_blocked_senders(rt_actor, host):
    """Senders waiting for mailbox space when the actor fails get ActorFailed, not a hang."""
    async with mvactors.Runtime() as rt:
        actor = await rt.spawn(rt_actor, host.imports("a"), mailbox_size=1)
        outcome: list[BaseException | None] = []
        with anyio.fail_after(TIMEOUT):
            await actor.send(ALLOCATE, 100_000)  # fills the mailbox; fails the actor when its turn runs
            async with anyio.create_task_group() as tg:

                async def sender() -> None:
                    try:
                        await actor.send(INCREMENT, 1)  # waits for space, or finds the actor failed
                        outcome.append(None)
                    except ActorFailed as exc:
                        outcome.append(exc)

                tg.start_soon(sender)
        assert len(outcome) == 1 and isinstance(outcome[0], ActorFailed)
        assert actor.state == "failed"


# ---- backpressure ----


async def test_full_mailbox_raises_with_overflow_raise(rt_actor, host):
    paused = anyio.Event()
    async with mvactors.Runtime(on_pause=lambda a, e: paused.set()) as rt:
        actor = await rt.spawn(rt_actor, host.imports("a"), gas=GasPolicy(per_turn=1000),
                               mailbox_size=2, overflow="raise")
        with anyio.fail_after(TIMEOUT):
            await actor.send(SPIN, 400)  # runs out of gas: stays at the head of the mailbox
            await paused.wait()
            await actor.send(INCREMENT, 1)
            assert actor.mailbox_depth == 2
            with pytest.raises(MailboxFull):
                await actor.send(INCREMENT, 100)
            with pytest.raises(MailboxFull):
                await actor.call(INCREMENT, 100)
            await actor.resume(100_000)
            await wait_until(lambda: actor.mailbox_depth == 0)
            assert await actor.call(GET_STATE) == [79800 + 1, [400]]


async def test_full_mailbox_blocks_senders_until_a_turn_frees_space(rt_actor, host):
    paused = anyio.Event()
    async with mvactors.Runtime(on_pause=lambda a, e: paused.set()) as rt:
        actor = await rt.spawn(rt_actor, host.imports("a"), gas=GasPolicy(per_turn=1000),
                               mailbox_size=2, overflow="wait")
        started, accepted = anyio.Event(), anyio.Event()
        with anyio.fail_after(TIMEOUT):
            await actor.send(SPIN, 400)
            await paused.wait()
            await actor.send(INCREMENT, 1)
            async with anyio.create_task_group() as tg:

                async def third() -> None:
                    started.set()
                    await actor.send(INCREMENT, 10)
                    accepted.set()

                tg.start_soon(third)
                await started.wait()
                await anyio.wait_all_tasks_blocked()
                assert not accepted.is_set()
                assert actor.mailbox_depth == 2
                await actor.resume(100_000)  # the paused turn completes, freeing a slot
                await accepted.wait()
            assert await actor.call(GET_COUNT) == 79800 + 1 + 10


# ---- timeouts and cancellation ----


async def test_call_timeout_withdraws_the_message(rt_actor, host):
    paused = anyio.Event()
    async with mvactors.Runtime(on_pause=lambda a, e: paused.set()) as rt:
        actor = await rt.spawn(rt_actor, host.imports("a"), gas=GasPolicy(per_turn=1000))
        with anyio.fail_after(TIMEOUT):
            await actor.send(SPIN, 400)
            await paused.wait()
            with pytest.raises(TimeoutError):
                await actor.call(INCREMENT, 1000, timeout=0.05)
            with anyio.move_on_after(0.05):  # cancellation withdraws too
                await actor.call(INCREMENT, 2000)
            assert actor.mailbox_depth == 1
            await actor.resume(100_000)
            assert await actor.call(GET_COUNT) == 79800
            assert await actor.call(INCREMENT, 1, timeout=5) == 79801


async def test_call_timeout_covers_waiting_for_mailbox_space(rt_actor, host):
    paused = anyio.Event()
    async with mvactors.Runtime(on_pause=lambda a, e: paused.set()) as rt:
        actor = await rt.spawn(rt_actor, host.imports("a"), gas=GasPolicy(per_turn=1000), mailbox_size=1)
        with anyio.fail_after(TIMEOUT):
            await actor.send(SPIN, 400)
            await paused.wait()
            with pytest.raises(TimeoutError):
                await actor.call(INCREMENT, 1000, timeout=0.05)
            await actor.resume(100_000)
            assert await actor.call(GET_COUNT) == 79800


async def test_timeout_after_the_turn_started_does_not_undo_it(rt_actor, host):
    """Only a message whose turn has not started is withdrawn; an awaited continuation still runs."""
    async with mvactors.Runtime() as rt:
        actor = await rt.spawn(rt_actor, host.imports("a"))
        gate = host.gate("k")
        with anyio.fail_after(TIMEOUT):
            with pytest.raises(TimeoutError):
                await actor.call(FETCH_ADD, "k", timeout=0.05)  # the turn ran; the promise is pending
            gate.set()
            # The host call still completes and its continuation is applied.
            await wait_until(lambda: not rt.stats()["host_calls_in_flight"] and actor.mailbox_depth == 0)
            assert await actor.call(GET_STATE) == [5, ["k"]]


async def test_stopping_the_runtime_releases_waiting_callers(rt_actor, host):
    outcome: list[BaseException] = []
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as outer, mvactors.Runtime() as rt:
            actor = await rt.spawn(rt_actor, host.imports("a"))
            host.gate("k")

            async def waiter() -> None:
                try:
                    await actor.call(FETCH_ADD, "k")
                except MicroviumError as exc:
                    outcome.append(exc)

            outer.start_soon(waiter)
            await host.started("k").wait()
    assert len(outcome) == 1
    with pytest.raises(MicroviumError):
        await actor.call(GET_COUNT)


# ---- metrics ----


async def test_metrics_and_stats(rt_actor, host):
    async with mvactors.Runtime() as rt:
        a = await rt.spawn(rt_actor, host.imports("a"), gas=GasPolicy(per_turn=1_000_000))
        b = await rt.spawn(rt_actor, host.imports("b"))
        with anyio.fail_after(TIMEOUT):
            for _ in range(10):
                await a.call(INCREMENT, 1)
            with pytest.raises(GuestError):
                await a.call(FAIL, "x")
            await b.call(NAP, 0, "t")
            await a.hibernate()
        m = a.metrics
        assert m.turns == 11 and m.failed_turns == 1 and m.hibernations == 1
        assert m.gas_used > 0 and m.pauses == 0 and m.mailbox_depth == 0
        snap = m.snapshot()
        assert snap["turns"] == 11 and snap["mailbox_depth"] == 0
        assert 0 < snap["turn_latency_p50_us"] <= snap["turn_latency_p99_us"]
        stats = rt.stats()
        assert stats["actors"] == 2 and stats["resident"] == 1 and stats["hibernated"] == 1
        assert stats["turns"] == 11 + 2  # b: the call and the timer completion
        assert stats["gas_used"] == m.gas_used
        assert stats["mailbox_depth"] == 0 and stats["pauses"] == 0
        assert stats["turn_latency_p50_us"] > 0
        assert rt.resident_count == 1


async def test_latency_history_is_bounded(rt_actor, host):
    async with mvactors.Runtime() as rt:
        actor = await rt.spawn(rt_actor, host.imports("a"))
        with anyio.fail_after(TIMEOUT):
            for _ in range(300):
                await actor.send(INCREMENT, 1)
            assert await actor.call(GET_COUNT) == 300
        m = actor.metrics
        assert m.turns == 301 and m.latencies is not None and len(m.latencies) == 128
        assert m.last_latency in m.latencies
        assert 0 < m.turn_latency(50) <= m.turn_latency(99)


async def test_runtime_must_be_running(rt_actor):
    rt = mvactors.Runtime()
    with pytest.raises(MicroviumError):
        await rt.spawn(rt_actor)
    with pytest.raises(ValueError):
        mvactors.Runtime(clock="sundial")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        GasPolicy(per_turn=0)


async def test_send_nowait_queues_from_synchronous_code(rt_actor, host):
    paused = anyio.Event()
    async with mvactors.Runtime(on_pause=lambda a, e: paused.set()) as rt:
        target = await rt.spawn(rt_actor, host.imports("t"), actor_id="t", gas=GasPolicy(per_turn=1500),
                                mailbox_size=2)
        # A host function of another actor forwards during its own turn.
        forwarder = await rt.spawn(rt_actor, host.imports("f", i1=lambda kind, a=None, b=None: (
            rt.get("t").send_nowait(INCREMENT, a) if kind == "enter" else None)))
        with anyio.fail_after(TIMEOUT):
            await forwarder.call(HANDLE, 5, 0)
            assert await target.call(GET_COUNT) == 5
            target.send_nowait(SPIN, 400)  # pauses: stays queued
            await paused.wait()
            target.send_nowait(INCREMENT, 1)
            with pytest.raises(MailboxFull):  # whatever the overflow policy
                target.send_nowait(INCREMENT, 1)
            with pytest.raises(TypeError):
                target.send_nowait(INCREMENT, object())
            await target.resume(100_000)
            await wait_until(lambda: target.mailbox_depth == 0)
            assert await target.call(GET_COUNT) == 5 + 79800 + 1


async def test_a_call_runs_inline_only_when_nothing_else_waits():
    """`call` may run its turn in the caller's task, but never ahead of queued work."""
    log: list[str] = []
    snapshot = mvactors.compile("const log = vmImport(1); vmExport(1, (who) => { log(who); return who; });")
    async with mvactors.Runtime() as rt:
        a = await rt.spawn(snapshot, {1: log.append})
        b = await rt.spawn(snapshot, {1: log.append})
        with anyio.fail_after(TIMEOUT):
            assert await b.call(1, "b0") == "b0"  # idle runtime: inline
            assert log == ["b0"]
            await a.send(1, "a1")
            await a.send(1, "a2")
            assert await b.call(1, "b1") == "b1"  # a has mail: b waits its turn behind a's first
            assert log.index("a1") < log.index("b1")
            await rt.wait_idle()
        assert sorted(log) == ["a1", "a2", "b0", "b1"]
        assert a.metrics.turns == 2 and b.metrics.turns == 2


async def test_a_caller_looping_over_inline_calls_lets_other_tasks_run_and_be_cancelled():
    """Inline calls yield to the loop every 64th time: a loop of them neither starves others nor ignores
    a cancelled scope for longer than that."""
    snapshot = mvactors.compile("let n = 0; vmExport(1, () => { n = n + 1; return n; });")
    async with mvactors.Runtime() as rt:
        actor = await rt.spawn(snapshot)
        ticks: list[int] = []
        calls = 0

        async def ticker() -> None:
            while True:
                ticks.append(calls)
                await anyio.sleep(0)

        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(ticker)
                await anyio.sleep(0)
                for _ in range(1000):
                    calls = await actor.call(1)
                tg.cancel_scope.cancel()
        assert calls == 1000
        # The other task ran at every yield or the next (trio may order a batch's tasks either way).
        progress = [b - a for a, b in itertools.pairwise(sorted(set(ticks)))]
        assert len(progress) >= 1000 // 128 and max(progress) <= 128
        with anyio.CancelScope() as scope:
            scope.cancel()
            for _ in range(200):
                await actor.call(1)
        assert scope.cancelled_caught
        ran = await actor.call(1) - 1001
        assert 0 <= ran <= 64  # calls made after the cancel, before a yield noticed it


async def test_time_limit_ends_a_runaway_turn_and_fails_that_actor_only(rt_actor, host):
    async with mvactors.Runtime(time_limit=0.05) as rt:
        victim = await rt.spawn(rt_actor, host.imports("v"))
        bystander = await rt.spawn(rt_actor, host.imports("b"))
        with anyio.fail_after(TIMEOUT):
            with pytest.raises((mvactors.TimeLimitExceeded, ActorFailed), match=r"time limit of 0\.05 s"):
                await victim.call(SPIN, 2_000_000_000)
            assert victim.state == "failed"
            assert await bystander.call(INCREMENT, 2) == 2


async def test_no_time_limit_runs_actors_on_the_engine_without_its_checks(rt_actor, host):
    with pytest.raises(ValueError, match="time_limit"):
        mvactors.Runtime(time_limit=0)
    async with mvactors.Runtime(time_limit=None, max_resident=0) as rt:
        actor = await rt.spawn(rt_actor, host.imports("a"))
        with anyio.fail_after(TIMEOUT):
            assert await actor.call(INCREMENT, 3) == 3
            assert await actor.call(INCREMENT, 1) == 4  # woken from hibernation on the same engine
        cell = actor.cell
        assert cell.vm is None or not cell.vm._inst.stoppable
        assert cell.time_limit is None

"""Hibernation, residency limits, clocks (wall, virtual, manual) and checkpoint stores."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from runtime_support import (
    FETCH_ADD,
    FETCH_THEN_SPIN,
    GET_COUNT,
    GET_STATE,
    HANDLE,
    INCREMENT,
    NAP,
    RECEIVE,
    SPIN,
    TICKER,
    TICKER_SYNC,
    TIMEOUT,
    Host,
    ManualClock,
    wait_until,
)

import mvactors
from mvactors import GasPolicy, MemoryStore, MicroviumError, SQLiteStore

pytestmark = pytest.mark.anyio


# ---- hibernation ----


async def test_hibernate_while_awaiting_a_host_call(rt_actor, host):
    async with mvactors.Runtime() as rt:
        actor = await rt.spawn(rt_actor, host.imports("a"))
        gate = host.gate("slow")
        host.values["slow"] = 40
        result: list[int] = []
        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as tg:

                async def slow() -> None:
                    result.append(await actor.call(FETCH_ADD, "slow"))

                tg.start_soon(slow)
                await host.started("slow").wait()
                await actor.hibernate()
                assert actor.state == "hibernated" and rt.resident_count == 0
                # A message wakes it transparently; the host call is still pending.
                assert await actor.call(INCREMENT, 2) == 2
                assert actor.state == "idle" and rt.resident_count == 1
                await actor.hibernate()
                assert actor.state == "hibernated"
                gate.set()  # the completion rehydrates it and resumes the awaiting guest code
            assert result == [42]
            assert await actor.call(GET_STATE) == [42, ["slow"]]
        assert actor.metrics.hibernations == 2 and actor.metrics.rehydrations == 2


async def test_hibernate_while_a_timer_is_pending(rt_actor, host):
    clock = ManualClock()
    async with mvactors.Runtime(clock=clock) as rt:
        actor = await rt.spawn(rt_actor, host.imports("a"))
        result: list[str] = []
        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as tg:

                async def nap() -> None:
                    result.append(await actor.call(NAP, 1500, "late"))

                tg.start_soon(nap)
                await host.seen("nap").wait()
                await actor.hibernate()
                assert actor.state == "hibernated"
                assert rt.stats()["timers"] == 1
                clock.advance(1.0)
                await anyio.wait_all_tasks_blocked()
                assert not result and actor.state == "hibernated"
                clock.advance(0.5)
            assert result == ["late"]
            assert host.kinds("woke") == [("a", "woke", "late", 1)]
            assert actor.metrics.rehydrations == 1


async def test_hibernate_after_idle_time(rt_actor, host):
    clock = ManualClock()
    async with mvactors.Runtime(clock=clock, hibernate_after=5.0) as rt:
        a = await rt.spawn(rt_actor, host.imports("a"))
        b = await rt.spawn(rt_actor, host.imports("b"))
        with anyio.fail_after(TIMEOUT):
            assert await a.call(INCREMENT, 1) == 1
            assert a.state == "idle" and b.state == "idle"
            clock.advance(3.0)
            assert await b.call(INCREMENT, 1) == 1
            clock.advance(2.5)  # a idle 5.5 s, b 2.5 s
            await wait_until(lambda: a.state == "hibernated")
            assert b.state == "idle"
            clock.advance(3.0)
            await wait_until(lambda: b.state == "hibernated")
            assert rt.resident_count == 0
            assert await a.call(GET_COUNT) == 1  # wakes on its next message
            assert a.state == "idle"


async def test_max_resident_keeps_the_least_recently_used_hibernated(rt_actor, host):
    limit, n = 3, 8
    observed: list[int] = []
    async with mvactors.Runtime(max_resident=limit) as rt:

        def resident(*_: Any) -> None:
            observed.append(rt.resident_count)

        actors = [await rt.spawn(rt_actor, host.imports(f"a{i}", i1=resident), actor_id=f"a{i}")
                  for i in range(n)]
        assert rt.resident_count <= limit
        with anyio.fail_after(TIMEOUT):
            # A burst of mail for every actor at once: never more than `limit` live VMs.
            async with anyio.create_task_group() as tg:
                for actor in actors:
                    for seq in range(5):
                        tg.start_soon(actor.send, HANDLE, actor.id, seq)
            for actor in actors:
                assert await actor.call(GET_COUNT) == 5
                assert rt.resident_count <= limit
            assert observed and max(observed) <= limit
            # LRU: the actors used last stay resident.
            for actor in actors[:limit + 1]:
                await actor.call(GET_COUNT)
            assert [a.state for a in actors[:limit + 1]] == ["hibernated"] + ["idle"] * limit
            assert rt.resident_count == limit
        stats = rt.stats()
        assert stats["resident"] == limit and stats["hibernated"] == n - limit
        assert stats["hibernations"] >= n - limit and stats["rehydrations"] > 0


async def test_max_resident_zero_runs_every_turn_from_a_record(rt_actor, host):
    async with mvactors.Runtime(max_resident=0) as rt:
        actor = await rt.spawn(rt_actor, host.imports("a"))
        assert actor.state == "hibernated"
        with anyio.fail_after(TIMEOUT):
            for i in range(1, 4):
                assert await actor.call(INCREMENT, 1) == i
                await wait_until(lambda: actor.state == "hibernated")
        assert actor.metrics.rehydrations == 3


# ---- clocks ----


async def test_virtual_clock_forgets_cancelled_sleeps():
    clock = mvactors.VirtualClock()
    with anyio.move_on_after(0):
        await clock.sleep_until(5.0)
    assert clock.next_deadline is None
    with anyio.CancelScope() as scope:
        scope.cancel()
        await clock.sleep_until(7.0)
    assert clock.next_deadline is None
    clock.advance_to(1.0)
    assert clock.now() == 1.0
    with pytest.raises(ValueError):
        clock.advance_to(0.5)


async def test_hibernate_after_on_the_virtual_clock(rt_actor, host):
    async with mvactors.Runtime(clock="virtual", hibernate_after=60.0) as rt:
        a = await rt.spawn(rt_actor, host.imports("a"))
        b = await rt.spawn(rt_actor, host.imports("b"))
        with anyio.fail_after(TIMEOUT):
            await a.call(INCREMENT, 1)
            await rt.sleep(30)
            await b.call(INCREMENT, 1)
            await rt.sleep(31)  # a idle 61 s, b 31 s
            assert (a.state, b.state) == ("hibernated", "idle")
            await rt.sleep(30)
            assert b.state == "hibernated"
            assert rt.clock.now() == pytest.approx(91.0)


async def simulate(rt_actor: bytes, rounds: int = 4, sync_post: bool = False) -> tuple[list[tuple[Any, ...]], float]:
    """A ring of actors that sleep (virtual) and post to their neighbour; returns the trace.

    ``sync_post`` forwards with ``send_nowait`` inside the turn instead of an async host call.
    """
    host = Host()
    async with mvactors.Runtime(clock="virtual") as rt:
        host.runtime = rt
        size = 4
        actors = []
        for i in range(size):
            imports = host.imports(f"a{i}")
            trace = imports[1]
            imports[1] = lambda kind, a=None, b=None, trace=trace: trace(kind, a, (b, rt.clock.now()))
            if sync_post:
                imports[3] = lambda target, value: rt.get(f"a{target}").send_nowait(RECEIVE, value)
            actors.append(await rt.spawn(rt_actor, imports, actor_id=f"a{i}"))
        with anyio.fail_after(TIMEOUT):
            for i in range(size):  # from one task, in order: the inputs are the same every run
                await actors[i].send(TICKER_SYNC if sync_post else TICKER, i, (i + 1) % size, rounds, 1000 * (i + 1))
            await rt.wait_idle()
            for actor in actors:
                assert await actor.call(GET_COUNT) == rounds
            return host.trace, rt.clock.now()


def check_simulation(trace: list[tuple[Any, ...]], end: float) -> None:
    # Actor i ticks at step_i * (1 + 2 + ... + k) seconds of virtual time.
    for i in range(4):
        ticks = [t for t in trace if t[0] == f"a{i}" and t[1] == "tick"]
        times = [t[3][1] for t in ticks]
        assert times == pytest.approx([(i + 1) * k * (k + 1) / 2 for k in range(1, 5)])
        received = [t for t in trace if t[0] == f"a{(i + 1) % 4}" and t[1] == "recv"]
        assert [t[2] for t in received] == [i * 1000 + k for k in range(4)]
        assert [t[3][1] for t in received] == times  # delivered at the same virtual instant
    assert end == pytest.approx(40.0)  # the slowest actor's last tick


async def test_virtual_clock_is_deterministic_and_does_not_wait(rt_actor, anyio_backend):
    started = time.perf_counter()
    first, end = await simulate(rt_actor)
    second, _ = await simulate(rt_actor)
    wall = time.perf_counter() - started
    check_simulation(first, end)
    assert wall < 10  # 80 s of simulated time (two runs) without waiting for it
    if anyio_backend == "asyncio":
        assert first == second  # the whole interleaving repeats exactly
    else:
        # The async host calls that forward messages are tasks, which trio runs in a random
        # order on purpose; each actor's own trace still repeats exactly.
        for i in range(4):
            assert [t for t in first if t[0] == f"a{i}"] == [t for t in second if t[0] == f"a{i}"]


def test_virtual_simulation_with_sync_forwarding_is_identical_on_every_event_loop(rt_actor):
    """With send_nowait the runtime alone orders everything: same trace on asyncio and trio, every run."""
    runs = [anyio.run(simulate, rt_actor, 4, True, backend=backend)
            for backend in ("asyncio", "trio", "trio", "asyncio", "trio")]
    check_simulation(*runs[0])
    assert all(run == runs[0] for run in runs[1:])


async def test_virtual_clock_jumps_over_long_sleeps(rt_actor, host):
    async with mvactors.Runtime(clock="virtual") as rt:
        actor = await rt.spawn(rt_actor, host.imports("a"))
        started = time.perf_counter()
        with anyio.fail_after(TIMEOUT):
            assert await actor.call(NAP, 3_600_000, "hour") == "hour"
            assert rt.clock.now() == pytest.approx(3600.0)
            await rt.sleep(60)
            assert rt.clock.now() == pytest.approx(3660.0)
        assert time.perf_counter() - started < 5


async def test_wall_clock_sleep_really_waits(rt_actor, host):
    async with mvactors.Runtime() as rt:
        actor = await rt.spawn(rt_actor, host.imports("a"))
        with anyio.fail_after(TIMEOUT):
            t0 = anyio.current_time()
            await actor.call(NAP, 30, "short")
            assert anyio.current_time() - t0 >= 0.03
            # Sleeps of several actors run concurrently, and fire in due order.
            async with anyio.create_task_group() as tg:
                for ms in (60, 20, 40):
                    tg.start_soon(actor.call, NAP, ms, ms)
            assert [t[2] for t in host.kinds("woke")] == ["short", 20, 40, 60]


# ---- checkpoints ----


@asynccontextmanager
async def open_store(kind: str, tmp_path: Path) -> AsyncIterator[Callable[[], Any]]:
    """Yields a factory returning the store as a fresh process would open it."""
    if kind == "memory":
        store = MemoryStore()
        yield lambda: store
        return
    opened: list[SQLiteStore] = []

    def reopen() -> SQLiteStore:
        opened.append(SQLiteStore(tmp_path / "checkpoints.db"))
        return opened[-1]

    try:
        yield reopen
    finally:
        for s in opened:
            await s.aclose()


@pytest.mark.parametrize("hibernated", [False, True], ids=["resident", "hibernated"])
@pytest.mark.parametrize("store_kind", ["memory", "sqlite"])
async def test_checkpoint_and_restore_in_a_fresh_runtime(rt_actor, tmp_path, store_kind, hibernated):
    async with open_store(store_kind, tmp_path) as store:
        host1 = Host()
        clock1 = ManualClock()
        async with mvactors.Runtime(clock=clock1, store=store()) as rt:
            actor = await rt.spawn(rt_actor, host1.imports("acc"), actor_id="acc")
            with anyio.fail_after(TIMEOUT):
                assert await actor.call(INCREMENT, 5) == 5
                await actor.send(NAP, 2000, "late")  # a pending 2 s sleep
                await host1.seen("nap").wait()
                host1.gate("k")
                await actor.send(FETCH_ADD, "k")  # a pending host call
                await host1.started("k").wait()
                if hibernated:  # the record is made now; the checkpoint later still counts time since
                    await actor.hibernate()
                    assert actor.state == "hibernated"
                clock1.advance(0.5)
                await actor.checkpoint()
        # Nothing ran after the checkpoint: the runtime (and its pending work) is gone.

        host2 = Host()
        host2.values["k"] = 100
        clock2 = ManualClock(start=1000.0)
        async with mvactors.Runtime(clock=clock2, store=store()) as rt:
            with anyio.fail_after(TIMEOUT):
                actor = await rt.restore("acc", host2.imports("acc"))
                assert rt.get("acc") is actor
                # The pending host call is issued again (at-least-once) and its result applied.
                await wait_until(lambda: host2.fetches == [("acc", "k")])
                await wait_until(lambda: rt.stats()["mailbox_depth"] == 0 and not rt.stats()["host_calls_in_flight"])
                assert await actor.call(GET_STATE) == [105, ["k"]]
                # The sleep keeps its remaining 1.5 s on the new clock.
                clock2.advance(1.4)
                await anyio.wait_all_tasks_blocked()
                assert not host2.kinds("woke")
                clock2.advance(0.1)
                await host2.seen("woke").wait()
                assert await actor.call(GET_STATE) == [106, ["k", "late"]]
                with pytest.raises(MicroviumError):
                    await rt.restore("acc", host2.imports("acc"))  # already running here
                with pytest.raises(KeyError):
                    await rt.restore("nobody", host2.imports())


@pytest.mark.parametrize("store_kind", ["memory", "sqlite"])
async def test_checkpoint_of_hibernated_and_paused_actors(rt_actor, tmp_path, store_kind):
    paused = anyio.Event()
    async with open_store(store_kind, tmp_path) as store:
        host1 = Host()
        async with mvactors.Runtime(store=store(), on_pause=lambda a, e: paused.set()) as rt:
            sleeper = await rt.spawn(rt_actor, host1.imports("s"), actor_id="sleeper")
            spender = await rt.spawn(rt_actor, host1.imports("p"), actor_id="spender",
                                     gas=GasPolicy(per_turn=1500))
            with anyio.fail_after(TIMEOUT):
                assert await sleeper.call(INCREMENT, 7) == 7
                await sleeper.hibernate()
                await sleeper.checkpoint()
                # Runs out of gas in the turn that delivers the host call's result.
                await spender.send(FETCH_THEN_SPIN, "k", 400)
                await paused.wait()
                await spender.checkpoint()

        host2 = Host()
        async with mvactors.Runtime(store=store()) as rt:
            with anyio.fail_after(TIMEOUT):
                sleeper = await rt.restore("sleeper", host2.imports("s"))
                assert await sleeper.call(GET_COUNT) == 7
                spender = await rt.restore("spender", host2.imports("p"))  # no gas limit now
                await wait_until(lambda: bool(host2.fetches))
                await wait_until(lambda: rt.stats()["mailbox_depth"] == 0 and not rt.stats()["host_calls_in_flight"])
                assert await spender.call(GET_STATE) == [79800, [5]]
            assert await store().ids() == ["sleeper", "spender"]


async def test_restore_needs_the_imports_it_awaits(rt_actor, host):
    store = MemoryStore()
    async with mvactors.Runtime(store=store) as rt:
        actor = await rt.spawn(rt_actor, host.imports("a"), actor_id="a")
        host.gate("k")
        with anyio.fail_after(TIMEOUT):
            await actor.send(FETCH_ADD, "k")
            await host.started("k").wait()
            await actor.checkpoint()
    host2 = Host()
    async with mvactors.Runtime(store=store) as rt:
        with pytest.raises(MicroviumError):
            await rt.restore("a", {})
        assert "a" not in rt and rt.resident_count == 0
        actor = await rt.restore("a", host2.imports("a"))  # the failed attempt left nothing behind
        with anyio.fail_after(TIMEOUT):
            await wait_until(lambda: rt.stats()["mailbox_depth"] == 0 and not rt.stats()["host_calls_in_flight"])
            assert await actor.call(GET_STATE) == [5, ["k"]]


async def test_checkpoint_needs_a_store(rt_actor, host):
    async with mvactors.Runtime() as rt:
        actor = await rt.spawn(rt_actor, host.imports("a"))
        with pytest.raises(MicroviumError):
            await actor.checkpoint()
        with pytest.raises(MicroviumError):
            await rt.restore("a")


async def test_sqlite_store_api(tmp_path):
    store = SQLiteStore(tmp_path / "db.sqlite")
    try:
        assert await store.load("x") is None
        await store.save("x", b"one")
        await store.save("b", b"two")
        await store.save("x", b"three")
        assert await store.load("x") == b"three"
        assert await store.ids() == ["b", "x"]
        await store.delete("x")
        await store.delete("x")
        assert await store.ids() == ["b"]
    finally:
        await store.aclose()
    again = SQLiteStore(tmp_path / "db.sqlite")
    try:
        assert await again.load("b") == b"two"
    finally:
        await again.aclose()
    assert isinstance(again, mvactors.CheckpointStore)


async def test_spin_still_works_after_many_hibernations(rt_actor, host):
    """Rehydrated VMs keep the exact heap: a long sequence of hibernate/wake changes nothing."""
    async with mvactors.Runtime() as rt:
        a = await rt.spawn(rt_actor, host.imports("a"))
        b = await rt.spawn(rt_actor, host.imports("b"))
        with anyio.fail_after(TIMEOUT):
            for i in range(20):
                await a.call(SPIN, i)
                await b.call(SPIN, i)
                await a.hibernate()
            assert await a.call(GET_STATE) == await b.call(GET_STATE)


async def test_many_actors_under_a_residency_cap_with_timers_and_host_calls(rt_actor):
    """50 actors, 4 live VMs, virtual timers and host calls all at once: every message counts once."""
    host = Host()
    n, cap = 50, 4
    async with mvactors.Runtime(clock="virtual", max_resident=cap) as rt:
        peak = 0

        def imports(actor_id: str) -> dict[int, Any]:
            table = host.imports(actor_id)
            trace = table[1]

            def watch(kind: str, a: Any = None, b: Any = None) -> None:
                nonlocal peak
                peak = max(peak, rt.resident_count)
                trace(kind, a, b)

            table[1] = watch
            return table

        actors = [await rt.spawn(rt_actor, imports(f"a{i}"), actor_id=f"a{i}") for i in range(n)]
        host.values.update({f"k{i}": i for i in range(n)})
        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as tg:
                for i, actor in enumerate(actors):
                    tg.start_soon(actor.call, NAP, 10 * (n - i), f"t{i}")  # fire in reverse order
                    tg.start_soon(actor.call, FETCH_ADD, f"k{i}")
                    for _ in range(3):
                        tg.start_soon(actor.send, INCREMENT, 1000)
            await rt.wait_idle()
            for i, actor in enumerate(actors):
                count, history = await actor.call(GET_STATE)
                assert count == 3000 + i + 1
                assert sorted(history, key=str) == sorted([f"k{i}", f"t{i}"], key=str)
        woke = [t[2] for t in host.kinds("woke")]
        assert woke == [f"t{i}" for i in reversed(range(n))]
        assert peak <= cap and rt.resident_count <= cap
        assert rt.stats()["hibernations"] >= n - cap


async def test_quota_left_survives_checkpoint_and_restore(rt_actor):
    store = MemoryStore()
    paused = anyio.Event()
    host = Host()
    async with mvactors.Runtime(store=store) as rt:
        actor = await rt.spawn(rt_actor, host.imports("q"), actor_id="q", gas=GasPolicy(quota=2500))
        with anyio.fail_after(TIMEOUT):
            assert await actor.call(SPIN, 50) == 1225  # ~1,000 instructions of 2,500
            await actor.checkpoint()
    async with mvactors.Runtime(store=store, on_pause=lambda a, e: paused.set()) as rt:
        actor = await rt.restore("q", host.imports("q"), gas=GasPolicy(quota=2500))
        with anyio.fail_after(TIMEOUT):
            assert await actor.call(SPIN, 50) == 2450
            await actor.send(SPIN, 50)  # would need ~1,000 more: the restored quota has ~500 left
            await paused.wait()
            assert actor.pause is not None and actor.pause.reason == "quota"


async def test_restore_rejects_a_corrupt_record_and_leaves_nothing_behind(rt_actor, host):
    store = MemoryStore()
    await store.save("junk", b"\x93not a record")
    async with mvactors.Runtime(store=store) as rt:
        actor = await rt.spawn(rt_actor, host.imports("a"), actor_id="a")
        with anyio.fail_after(TIMEOUT):
            await actor.call(INCREMENT, 1)
            await actor.checkpoint()
        record = await store.load("a")
        assert record is not None
        await store.save("truncated", record[: len(record) // 2])
        for actor_id in ("junk", "truncated"):
            with pytest.raises(MicroviumError):
                await rt.restore(actor_id, host.imports(actor_id))
            assert actor_id not in rt
        assert len(rt) == 1 and rt.resident_count == 1


@pytest.mark.parametrize("clock_kind", ["virtual", "manual"])
async def test_call_timeouts_run_on_the_runtime_clock(rt_actor, host, clock_kind):
    """On a simulated clock, timeout= is simulated seconds: deterministic, and no wall time passes."""
    clock: Any = "virtual" if clock_kind == "virtual" else ManualClock()
    async with mvactors.Runtime(clock=clock) as rt:
        actor = await rt.spawn(rt_actor, host.imports("a"))
        with anyio.fail_after(TIMEOUT):
            if clock_kind == "virtual":
                with pytest.raises(TimeoutError):
                    await actor.call(NAP, 60_000, "slow", timeout=30)  # the guest sleeps 60 s
                assert rt.clock.now() == pytest.approx(30.0)
                assert await actor.call(NAP, 10_000, "quick", timeout=30) == "quick"
                assert rt.clock.now() == pytest.approx(40.0)
            else:
                async with anyio.create_task_group() as tg:
                    outcome: list[Any] = []

                    async def call() -> None:
                        try:
                            outcome.append(await actor.call(NAP, 5_000, "x", timeout=2))
                        except TimeoutError as exc:
                            outcome.append(exc)

                    tg.start_soon(call)
                    await host.seen("nap").wait()
                    clock.advance(1.5)
                    await anyio.wait_all_tasks_blocked()
                    assert not outcome  # 1.5 s of the runtime's clock: not yet
                    clock.advance(0.5)
                assert len(outcome) == 1 and isinstance(outcome[0], TimeoutError)

"""Moving actors between runtimes (adopt/evict, ActorRecord), submit, on_turn, and HostCalls interception."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import anyio
import msgpack
import pytest
from runtime_support import (
    ALLOCATE,
    FAIL,
    FETCH,
    FETCH_ADD,
    GET_COUNT,
    GET_STATE,
    HANDLE,
    INCREMENT,
    NAP,
    TIMEOUT,
    TRACE,
    Host,
    ManualClock,
    wait_until,
)

import mvactors
from mvactors import ActorEvicted, ActorRecord, AsyncCall, HostCalls, RecordCorrupt, TurnOutcome

pytestmark = pytest.mark.anyio


class StartedCalls(HostCalls):
    """Remembers every async call it starts (sleeps included), then runs it as usual."""

    def __init__(self) -> None:
        self.started: list[AsyncCall] = []

    def start(self, actor: mvactors.Actor, call: AsyncCall) -> None:
        self.started.append(call)
        super().start(actor, call)


async def _busy_actor(rt: mvactors.Runtime, snapshot: bytes, host: Host,
                      clock: ManualClock) -> tuple[mvactors.Actor, anyio.Event]:
    """An actor with count 5, a 2 s sleep due at 2.0 and a fetch of "k" in flight (and its gate), at time 0.5."""
    actor = await rt.spawn(snapshot, host.imports("a"), actor_id="a")
    assert await actor.call(INCREMENT, 5) == 5
    await actor.send(NAP, 2000, "late")
    await host.seen("nap").wait()
    gate = host.gate("k")
    await actor.send(FETCH_ADD, "k")
    await host.started("k").wait()
    clock.advance(0.5)
    return actor, gate


async def test_readopted_under_the_same_id_only_its_own_sleep_fires(rt_actor):
    # The evicted actor's sleep stays in the runtime's timer heap until due: it must fire
    # into nothing, not into the new actor that took the same ID meanwhile.
    host, clock = Host(), ManualClock()
    async with mvactors.Runtime(clock=clock) as rt:
        with anyio.fail_after(TIMEOUT):
            first = await rt.spawn(rt_actor, host.imports("a"), actor_id="a")
            await first.send(NAP, 2000, "late")
            await host.seen("nap").wait()
            assert rt.stats()["timers"] == 1
            record = rt.evict("a")
            assert rt.stats()["timers"] == 0
            again = await rt.adopt(record, "a", host.imports("a"))
            assert rt.stats()["timers"] == 1  # the adopted sleep (the evicted one no longer counts)
            clock.advance(2.0)
            await host.seen("woke").wait()
            await rt.wait_idle()
            assert rt.stats()["timers"] == 0
            assert len(host.kinds("woke")) == 1
            assert first.state == "evicted" and again.state == "idle"


@pytest.mark.parametrize("hibernated", [False, True], ids=["resident", "hibernated"])
async def test_evict_then_adopt_carries_state_sleeps_and_awaited_calls(rt_actor, hibernated):
    host1, clock1 = Host(), ManualClock()
    async with mvactors.Runtime(clock=clock1) as rt:
        with anyio.fail_after(TIMEOUT):
            actor, gate = await _busy_actor(rt, rt_actor, host1, clock1)
            if hibernated:
                await actor.hibernate()
            record = rt.evict("a")
            assert "a" not in rt and actor.state == "evicted" and rt.resident_count == 0
            gate.set()  # the dropped fetch finishes into nothing
            await rt.wait_idle()  # and the evicted actor's sleep no longer counts as pending work
            assert actor.metrics.turns == 3
            with pytest.raises(ActorEvicted):
                await actor.call(GET_COUNT)
    assert record.turns == 3  # increment, nap's first part, fetchAdd's first part
    sleep_call, fetch_call = sorted(record.pending, key=lambda p: p.due is None)
    assert fetch_call.args == ("k",) and fetch_call.due is None
    # The sleep is stored as the wall time it is due: 1.5 s after the eviction.
    assert sleep_call.due == pytest.approx(time.time() + 1.5, abs=1.0)
    assert ActorRecord.decode(record.encode()) == record

    host2, clock2, calls = Host(), ManualClock(start=1000.0), StartedCalls()
    host2.values["k"] = 100
    async with mvactors.Runtime(clock=clock2, host_calls=calls) as rt:
        with anyio.fail_after(TIMEOUT):
            adopted = await rt.adopt(ActorRecord.decode(record.encode()), "b", host2.imports("b"))
            # The awaited fetch is issued again through host_calls, with the same token (so the same key).
            assert [(c.import_id, c.args, c.key) for c in calls.started if c.due is None] == [
                (FETCH, ("k",), f"b/{fetch_call.token}")]
            await wait_until(lambda: rt.stats()["mailbox_depth"] == 0 and not rt.stats()["host_calls_in_flight"])
            assert host2.fetches == [("b", "k")]
            assert await adopted.call(GET_STATE) == [105, ["k"]]
            clock2.advance(1.4)
            await anyio.wait_all_tasks_blocked()
            assert not host2.kinds("woke")
            clock2.advance(0.1)
            await host2.seen("woke").wait()
            assert await adopted.call(GET_STATE) == [106, ["k", "late"]]
            assert adopted.record().turns == record.turns + 4  # completion, timer, two getState


async def test_an_overdue_sleep_fires_at_once_and_a_later_one_waits(rt_actor):
    host, clock = Host(), ManualClock()
    async with mvactors.Runtime(clock=clock) as rt:
        with anyio.fail_after(TIMEOUT):
            actor = await rt.spawn(rt_actor, host.imports("a"), actor_id="a")
            await actor.send(NAP, 60_000, "minute")
            await host.seen("nap").wait()
            record = rt.evict("a")
    (pending,) = record.pending
    overdue = dataclasses.replace(record, pending=(dataclasses.replace(pending, due=time.time() - 30),))
    later = dataclasses.replace(record, pending=(dataclasses.replace(pending, due=time.time() + 3600),))
    host = Host()
    async with mvactors.Runtime(clock=ManualClock(start=5.0)) as rt:
        with anyio.fail_after(TIMEOUT):
            await rt.adopt(overdue, "overdue", host.imports("overdue"))
            await host.seen("woke").wait()  # due in the past: fires without the clock moving
            await rt.adopt(later, "later", host.imports("later"))
            await anyio.wait_all_tasks_blocked()
            assert [t[0] for t in host.kinds("woke")] == ["overdue"]
            assert rt.stats()["timers"] == 1


async def test_evict_fails_queued_callers_and_adopt_leaves_nothing_behind_on_a_missing_import(rt_actor):
    host = Host()
    async with mvactors.Runtime() as rt:
        actor = await rt.spawn(rt_actor, host.imports("a"), actor_id="a")
        gate = host.gate("k")
        with anyio.fail_after(TIMEOUT):
            pending = actor.submit(FETCH_ADD, "k")  # awaits the gated fetch
            await host.started("k").wait()
            record = rt.evict("a")
            with pytest.raises(ActorEvicted):
                await pending.wait()
            with pytest.raises(mvactors.ActorError) as info:
                await rt.adopt(record, "a", {TRACE: host.imports()[TRACE]})
            assert info.value.code == "MVA_UNRESOLVED_IMPORT"
            assert "a" not in rt and rt.resident_count == 0
            adopted = await rt.adopt(record, "a", host.imports("a"))
            with pytest.raises(mvactors.ActorExists):
                await rt.adopt(record, "a", host.imports("a"))
            gate.set()  # the dropped fetch and the re-issued one both complete
            await wait_until(lambda: rt.stats()["mailbox_depth"] == 0 and not rt.stats()["host_calls_in_flight"])
            assert await adopted.call(GET_STATE) == [5, ["k"]]


async def test_submit_queues_in_call_order_and_replies_with_copies(rt_actor, host):
    async with mvactors.Runtime() as rt:
        actor = await rt.spawn(rt_actor, host.imports("a"))
        replies = [actor.submit(INCREMENT, n) for n in (1, 2, 3)]
        failing = actor.submit(FAIL, "no")
        state = actor.submit(GET_STATE)
        assert not any(r.done for r in replies)
        with anyio.fail_after(TIMEOUT):
            assert [await r.wait() for r in replies] == [1, 3, 6]
            with pytest.raises(mvactors.GuestError):
                await failing.wait()
            assert await state.wait() == [6, []]
        assert all(r.done for r in replies)
        with pytest.raises(TypeError):
            actor.submit(INCREMENT, object())


async def test_on_turn_sees_every_completed_turn_with_its_kind(rt_actor, host):
    seen: list[tuple[str, str, bool]] = []

    def on_turn(actor: mvactors.Actor, outcome: TurnOutcome) -> None:
        assert actor.state != "running"  # between turns
        seen.append((actor.id, outcome.kind, outcome.failed))

    async with mvactors.Runtime(clock="virtual", on_turn=on_turn) as rt:
        actor = await rt.spawn(rt_actor, host.imports("a"), actor_id="a")
        with anyio.fail_after(TIMEOUT):
            assert await actor.call(FETCH_ADD, "k") == 5
            assert await actor.call(NAP, 10, "t") == "t"
            with pytest.raises(mvactors.GuestError):
                await actor.call(FAIL, "boom")
    assert seen == [("a", "message", False), ("a", "completion", False),
                    ("a", "message", False), ("a", "timer", False), ("a", "message", True)]


async def test_a_host_calls_subclass_intercepts_sync_and_async_calls(rt_actor, host):
    class Journal(HostCalls):
        def __init__(self) -> None:
            self.sync: list[tuple[int, tuple[Any, ...]]] = []
            self.keys: list[str] = []

        def call(self, actor: mvactors.Actor, import_id: int, fn: Any, args: tuple[Any, ...]) -> Any:
            self.sync.append((import_id, args))
            return fn(*args)

        async def run(self, actor: mvactors.Actor, call: AsyncCall) -> tuple[bool, Any]:
            if call.import_id == FETCH:
                self.keys.append(call.key)
                return True, 40  # a recorded result: fetch itself is never called
            return await super().run(actor, call)

    journal = Journal()
    async with mvactors.Runtime(host_calls=journal) as rt:
        actor = await rt.spawn(rt_actor, host.imports("a"), actor_id="a")
        with anyio.fail_after(TIMEOUT):
            assert await actor.call(FETCH_ADD, "k") == 40
            assert await actor.call(HANDLE, "s", 7) == 41
    assert host.fetches == [] and journal.keys == ["a/1"]
    assert journal.sync == [(TRACE, ("enter", "s", 7)), (TRACE, ("exit", "s", 7))]


async def test_current_call_and_journaled_in_a_plain_runtime(rt_actor, host):
    seen: list[AsyncCall] = []

    async def fetch(key: Any) -> Any:
        seen.append(mvactors.current_call())
        await anyio.lowlevel.checkpoint()
        return 2

    async with mvactors.Runtime() as rt:
        actor = await rt.spawn(rt_actor, host.imports("a", i2=mvactors.journaled(fetch)), actor_id="a")
        with anyio.fail_after(TIMEOUT):
            assert await actor.call(FETCH_ADD, "x") == 2
            assert await actor.call(FETCH_ADD, "y") == 4
    assert [(c.key, c.args) for c in seen] == [("a/1", ("x",)), ("a/2", ("y",))]
    assert isinstance(seen[0].fn, mvactors.imports.Journaled)
    with pytest.raises(LookupError):
        mvactors.current_call()


def _packed(*fields: Any) -> bytes:
    return msgpack.packb(list(fields), use_bin_type=True)  # type: ignore[no-any-return]


async def test_a_simulated_clock_resumes_a_sleep_with_the_time_it_had_left_however_late_it_is_adopted(rt_actor):
    host, clock = Host(), ManualClock()
    async with mvactors.Runtime(clock=clock) as rt:
        with anyio.fail_after(TIMEOUT):
            actor = await rt.spawn(rt_actor, host.imports("a"), actor_id="a")
            await actor.send(NAP, 1500, "late")
            await host.seen("nap").wait()
            record = rt.evict("a")
    (pending,) = record.pending
    # As if the record had waited an hour in a store before this simulation resumed it.
    hour_old = dataclasses.replace(record, written_at=record.written_at - 3600,
                                   pending=(dataclasses.replace(pending, due=pending.due - 3600),))
    host, clock = Host(), ManualClock(start=10.0)
    async with mvactors.Runtime(clock=clock) as rt:
        with anyio.fail_after(TIMEOUT):
            await rt.adopt(ActorRecord.decode(hour_old.encode()), "b", host.imports("b"))
            clock.advance(1.499)
            await anyio.wait_all_tasks_blocked()
            assert not host.kinds("woke")  # not overdue: the simulation's 1.5 s are still ahead
            clock.advance(0.001)
            await host.seen("woke").wait()


@pytest.mark.parametrize("data", [
    b"", b"\x93not a record", b"\xc1", _packed(), _packed(2), _packed(99, b"s", 1, [], [], None, 0),
    _packed(2, "not bytes", 1, [], [], None, 0), _packed(2, b"s", 1.5, [], [], None, 0),
    _packed(2, b"s", 1, [[1, 2, 3]], [], None, 0), _packed(2, b"s", 1, [[1, 2, 9, "args", None]], [], None, 0),
    _packed(2, b"s", 1, [], [[1]], None, 0), _packed(2, b"s", 1, [], [], "lots", 0), {"a": 1},
], ids=lambda d: repr(d)[:40])
def test_record_decode_rejects_what_is_not_a_record(data):
    if isinstance(data, dict):
        data = msgpack.packb(data)
    with pytest.raises(RecordCorrupt) as info:
        ActorRecord.decode(data)
    assert info.value.code == "MVA_RECORD_CORRUPT" and isinstance(info.value, mvactors.MicroviumError)


def test_record_codec_round_trips_and_reads_version_1():
    record = ActorRecord(b"snap", 7, (mvactors.PendingCall(3, 120, 2, ("k", [1, 2]), None),
                                      mvactors.PendingCall(4, ~5, 9, (1000,), 1.8e9)), ((1, 44),), 900, 12)
    assert ActorRecord.decode(record.encode()) == record
    v1 = _packed(1, b"snap", 7, [[4, ~5, 9, [1000], 2.5]], [[1, 44]], None)
    old = ActorRecord.decode(v1)
    assert old.turns == 0 and old.quota_left is None and old.refs == ((1, 44),)
    assert old.pending[0].due == pytest.approx(time.time() + 2.5, abs=1.0)  # v1 kept seconds left


async def test_evicting_a_failed_actor_removes_it_and_says_there_is_no_record(rt_actor, host):
    async with mvactors.Runtime() as rt:
        actor = await rt.spawn(rt_actor, host.imports("a"), actor_id="a")
        with anyio.fail_after(TIMEOUT):
            with pytest.raises((mvactors.VMUnusable, mvactors.ActorFailed)):
                await actor.call(ALLOCATE, 100_000)  # unmetered: out of memory is fatal
        assert actor.state == "failed"
        with pytest.raises(mvactors.ActorFailed, match="no record"):
            rt.evict("a")
        assert "a" not in rt and rt.stats()["failed"] == 0
        with pytest.raises(KeyError):
            rt.evict("a")


async def test_a_caller_waits_on_an_async_export_adopted_elsewhere_through_reply_for(rt_actor):
    host1 = Host()
    async with mvactors.Runtime() as rt:
        with anyio.fail_after(TIMEOUT):
            actor = await rt.spawn(rt_actor, host1.imports("a"), actor_id="a")
            host1.gate("k")
            reply = actor.submit(FETCH_ADD, "k")
            await host1.started("k").wait()
            (key, waiting), = actor.awaiting().items()
            assert waiting is reply and not reply.done
            record = actor.record()
    assert [k for k, _ in record.refs] == [key]  # the promise travels under the key awaiting() named

    host2 = Host()
    host2.values["k"] = 7
    async with mvactors.Runtime() as rt:
        with anyio.fail_after(TIMEOUT):
            adopted = await rt.adopt(ActorRecord.decode(record.encode()), "b", host2.imports("b"))
            moved = adopted.reply_for(key)
            assert await moved.wait() == 7  # fetchAdd's result, computed here
            with pytest.raises(mvactors.ActorError) as info:
                adopted.reply_for(key)  # claimed once
            assert info.value.code == "MVA_NO_SUCH_PROMISE"
            assert adopted.awaiting() == {}
            # A fresh call gets a call id of its own, not the adopted one.
            host2.gate("j")
            second = adopted.submit(FETCH_ADD, "j")
            await host2.started("j").wait()
            assert list(adopted.awaiting()) == [key + 1] and adopted.awaiting()[key + 1] is second


async def test_a_plain_adopt_drops_the_promises_nobody_claims(rt_actor):
    host1 = Host()
    async with mvactors.Runtime() as rt:
        with anyio.fail_after(TIMEOUT):
            actor = await rt.spawn(rt_actor, host1.imports("a"), actor_id="a")
            host1.gate("k")
            actor.submit(FETCH_ADD, "k")
            await host1.started("k").wait()
            (key,) = actor.awaiting()
            record = actor.record()
    host2 = Host()
    host2.values["k"] = 7
    async with mvactors.Runtime() as rt:
        with anyio.fail_after(TIMEOUT):
            adopted = await rt.adopt(record, "b", host2.imports("b"))
            await wait_until(lambda: rt.stats()["mailbox_depth"] == 0 and not rt.stats()["host_calls_in_flight"])
            assert await adopted.call(GET_STATE) == [7, ["k"]]  # the chain still ran
            assert adopted.record().refs == ()  # and nothing keeps its promise
            await adopted.hibernate()
            await adopted.call(GET_COUNT)
            with pytest.raises(mvactors.ActorError):
                adopted.reply_for(key)

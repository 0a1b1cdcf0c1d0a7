"""History, replay, fork and reset (issue 16): kept turns in Redis, re-run in process, copied and rewound."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

import mvactors
from mvactors.cluster import ActorNotFound
from mvactors.cluster.keys import ActorKeys
from tests.cluster.cluster_hosts import IMPORTS

from .processes import eventually, worker

pytestmark = pytest.mark.anyio

V1 = """
const effect = vmImport(1);    // synchronous host call
const fetch = vmImport(3);     // async host call
let count = 0;
function add(tag) { effect("add " + tag); count = count + 1; return count; }
async function get(x) { const v = await fetch(x); count = count + 1; return v + ":" + count; }
function total() { return count; }
vmExport(1, add);
vmExport(2, get);
vmExport(3, total);
function out() { return { count: count }; }
vmExport(10, out);
"""
# v2 counts by two: a replay of v1's history on it diverges at its first add().
V2 = V1.replace("count = count + 1; return count;", "count = count + 2; return count;")


# The upgrades: IN multiplies the migrated count by 100 (so a test sees it ran), or throws.
UP = V2 + """
function into(v) { count = v.count * 100; }
function boom(v) { count = 7; throw "cannot migrate " + v.count; }
vmExport(11, into);
vmExport(12, boom);
"""


@pytest.fixture
def v1(compile_js: Callable[[str], bytes]) -> bytes:
    return compile_js(V1)


async def _history(client: mvactors.Client, actor_id: str) -> list[dict]:
    return [entry async for entry in client.history(actor_id)]


async def test_history_keeps_the_last_k_turns_with_host_calls(redis_url: str, v1: bytes) -> None:
    async with mvactors.connect(redis_url) as client, mvactors.Worker(redis_url, IMPORTS):
        actor_id = await client.spawn(v1, imports="counter", history=3)
        plain = await client.spawn(v1, imports="counter")
        assert await client.call(actor_id, 1, "a", timeout=10) == 1
        assert await client.call(actor_id, 2, "x", timeout=10) == "x:2"
        assert await client.call(actor_id, 1, "b", timeout=10) == 3
        assert await client.call(plain, 1, "a", timeout=10) == 1
        kept = await _history(client, actor_id)
        # 4 turns: add, get (its call), get's completion, add; the cap keeps the last 3
        assert [e["turn"] for e in kept] == [2, 3, 4]
        assert [e["kind"] for e in kept] == ["message", "completion", "message"]
        call = kept[0]
        assert call["export"] == 2 and call["args"] == ["x"] and call["message_id"]
        assert [(c["import"], c["args"]) for c in call["host_calls"]] == [(3, ["x"])]
        assert kept[1]["token"] == call["host_calls"][0]["token"] and kept[1]["value"] == "x" and kept[1]["ok"]
        assert kept[2]["result"] == 3 and kept[2]["host_calls"] == [{"import": 1, "args": ["add b"], "result": None}]
        assert await _history(client, plain) == []
        assert not await client.redis.exists(ActorKeys.of(plain).history_base)
        with pytest.raises(ActorNotFound):
            await _history(client, "nobody")
        await client.delete(actor_id)
        keys = ActorKeys.of(actor_id)
        assert not await client.redis.exists(keys.history, keys.history_records, keys.history_base)


async def test_replay_matches_then_diverges_on_new_code(redis_url: str, v1: bytes,
                                                        compile_js: Callable[[str], bytes]) -> None:
    async with mvactors.connect(redis_url) as client:
        actor_id = await client.spawn(v1, imports="counter", history=10)
        async with mvactors.Worker(redis_url, IMPORTS):
            for tag in "abc":
                await client.call(actor_id, 1, tag, timeout=10)
            assert await client.call(actor_id, 2, "y", timeout=10) == "y:4"
        # No worker runs now: replay is in this process, and calls no host function.
        report = await client.replay(actor_id)
        assert report == {"turns": 5, "diverged": None}
        report = await client.replay(actor_id, snapshot=v1)  # the same code from its start: same history
        assert report == {"turns": 5, "diverged": None}
        report = await client.replay(actor_id, snapshot=compile_js(V2))
        assert report["diverged"] == {"turn": 1, "expected": {"result": 1}, "got": {"result": 2}}
        plain = await client.spawn(v1)
        with pytest.raises(ValueError, match="keeps no history"):
            await client.replay(plain)


async def test_replay_starts_from_the_record_before_the_oldest_kept_turn(redis_url: str, v1: bytes) -> None:
    async with mvactors.connect(redis_url) as client:
        actor_id = await client.spawn(v1, imports="counter", history=2)
        async with mvactors.Worker(redis_url, IMPORTS):
            for tag in "abcde":
                await client.call(actor_id, 1, tag, timeout=10)
        assert [e["result"] for e in await _history(client, actor_id)] == [4, 5]
        assert await client.replay(actor_id) == {"turns": 2, "diverged": None}


async def test_fork_starts_a_copy_at_an_earlier_turn(redis_url: str, v1: bytes) -> None:
    async with mvactors.connect(redis_url) as client, mvactors.Worker(redis_url, IMPORTS):
        actor_id = await client.spawn(v1, imports="counter", history=3)
        for tag in "abcd":
            await client.call(actor_id, 1, tag, timeout=10)
        fork = await client.fork(actor_id, turn=2, actor_id="forked")
        assert fork == "forked"
        info, original = await client.describe(fork), await client.describe(actor_id)
        assert info["turns"] == 2 and info["mailbox"] == 0 and info["history"] == 3
        assert info["code"] == original["code"] and info["imports"] == "counter"
        assert [e["turn"] for e in await _history(client, fork)] == [2]
        assert await client.call(fork, 3, timeout=10) == 2  # its own state: turn 2's
        assert await client.call(actor_id, 3, timeout=10) == 4
        # 5 turns now, 3 kept (3..5): turn 2 is the base, the record before the oldest kept turn
        at_base = await client.fork(actor_id, turn=2)
        assert await client.call(at_base, 3, timeout=10) == 2
        with pytest.raises(ValueError, match=r"turns 2\.\.5 are kept"):
            await client.fork(actor_id, turn=1)
        with pytest.raises(ValueError, match=r"turns 2\.\.5 are kept"):
            await client.fork(actor_id, turn=9)
        with pytest.raises(mvactors.cluster.ActorExistsInRedis):
            await client.fork(actor_id, turn=2, actor_id="forked")
        with pytest.raises(ActorNotFound):
            await client.fork("nobody", turn=1)
        with pytest.raises(ValueError, match="non-negative int"):
            await client.fork(actor_id, turn=-1)


async def test_fork_at_turn_zero_is_the_spawned_snapshot(redis_url: str, v1: bytes) -> None:
    async with mvactors.connect(redis_url) as client, mvactors.Worker(redis_url, IMPORTS):
        actor_id = await client.spawn(v1, imports="counter", history=5)
        await client.call(actor_id, 1, "a", timeout=10)
        fork = await client.fork(actor_id, turn=0)
        assert await client.call(fork, 1, "b", timeout=10) == 1


async def test_reset_drops_or_reapplies_the_later_messages(redis_url: str, v1: bytes) -> None:
    async with mvactors.connect(redis_url) as client, mvactors.Worker(redis_url, IMPORTS):
        actor_id = await client.spawn(v1, imports="counter", history=5)
        for tag in "abc":
            await client.call(actor_id, 1, tag, timeout=10)
        await client.reset(actor_id, turn=1)
        assert (await client.describe(actor_id))["turns"] == 1
        assert await client.call(actor_id, 3, timeout=10) == 1  # b and c are gone
        assert [e["args"] for e in await _history(client, actor_id)] == [["a"], []]
        # reapply: the messages after turn 1 (the total() call above) run again, in order, then new mail
        await client.call(actor_id, 1, "d", timeout=10)
        await client.reset(actor_id, turn=1, reapply=True)
        assert await client.call(actor_id, 1, "e", timeout=10) == 3

        async def reapplied() -> bool:
            return [e["args"] for e in await _history(client, actor_id)][1:] == [[], ["d"], ["e"]]

        await eventually(reapplied, 10, "the reapplied messages to run before the new one")
        with pytest.raises(ValueError, match=r"turns 0\.\.4 are kept"):
            await client.reset(actor_id, turn=7)
        with pytest.raises(ActorNotFound):
            await client.reset("nobody", turn=1)


@pytest.mark.parametrize("reapply", [False, True])
async def test_reset_answers_the_callers_of_promises_it_drops(redis_url: str, v1: bytes, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               reapply: bool) -> None:
    # get() awaits a host call gated on a file: its caller waits on a promise the reset rewinds past.
    monkeypatch.setenv("MVACTORS_TEST_GATES", str(tmp_path))
    answers: list[object] = []
    async with mvactors.connect(redis_url) as client, mvactors.Worker(redis_url, IMPORTS), \
            anyio.create_task_group() as tg:
        actor_id = await client.spawn(v1, imports="counter", history=5)
        await client.call(actor_id, 1, "a", timeout=10)

        async def caller() -> None:
            try:
                answers.append(await client.call(actor_id, 2, "gate:g", timeout=30))
            except mvactors.Cancelled as exc:
                answers.append(exc)

        tg.start_soon(caller)

        async def parked() -> bool:  # its turn is committed with the caller in the settling list
            return bool(await client.redis.hget(ActorKeys.of(actor_id).state, "s"))

        await eventually(parked, 10, "the async export's turn to be committed, its promise pending")
        await client.reset(actor_id, turn=1, reapply=reapply)
        if reapply:  # the message runs again on the rewound state, and its caller hears that run
            (tmp_path / "g").touch()
            await eventually(lambda: _answered(answers), 10, "the re-run to answer the caller")
            assert answers == ["gate:g:2"]
        else:
            await eventually(lambda: _answered(answers), 10, "the caller to hear of the reset")
            assert isinstance(answers[0], mvactors.Cancelled) and "reset to turn 1" in str(answers[0])
            assert await client.call(actor_id, 3, timeout=10) == 1


async def _answered(answers: list[object]) -> bool:
    return bool(answers)


async def test_upgrade_migrates_state_in_mailbox_order(redis_url: str, v1: bytes,
                                                       compile_js: Callable[[str], bytes]) -> None:
    up = compile_js(UP)
    async with mvactors.connect(redis_url) as client, mvactors.Worker(redis_url, IMPORTS):
        actor_id = await client.spawn(v1, imports="counter", history=10)
        before = (await client.describe(actor_id))["code"]
        for tag in "ab":
            await client.send(actor_id, 1, tag)  # old code: +1 each
        await client.upgrade(actor_id, up, migrate=(10, 11), timeout=10)
        assert await client.call(actor_id, 1, "c", timeout=10) == 202  # 2 migrated x 100, then +2 (new code)
        info = await client.describe(actor_id)
        assert info["code"] != before and info["state"] != "paused" and info["turns"] == 4
        kinds = [(e["kind"], e["turn"]) for e in await _history(client, actor_id)]
        assert kinds == [("message", 1), ("message", 2), ("upgrade", 3), ("message", 4)]
        # Without migrate the new snapshot's own state replaces the old.
        await client.upgrade(actor_id, up, timeout=10)
        assert await client.call(actor_id, 3, timeout=10) == 0


async def test_upgrade_is_atomic_when_in_throws(redis_url: str, v1: bytes, compile_js: Callable[[str], bytes]) -> None:
    up = compile_js(UP)
    async with mvactors.connect(redis_url) as client, mvactors.Worker(redis_url, IMPORTS):
        actor_id = await client.spawn(v1, imports="counter", history=5)
        await client.call(actor_id, 1, "a", timeout=10)
        before = await client.describe(actor_id)
        with pytest.raises(mvactors.UpgradeFailed, match=r"IN \(export 12\) threw: guest threw 'cannot migrate 1'"):
            await client.upgrade(actor_id, up, migrate=(10, 12), timeout=10)
        after = await client.describe(actor_id)
        assert after["code"] == before["code"] and after["turns"] == 1 and after["paused"] is None
        assert await client.call(actor_id, 1, "b", timeout=10) == 2  # old code, old state
        assert [e["kind"] for e in await _history(client, actor_id)] == ["message", "message"]


async def test_upgrade_refuses_bad_input_before_anything_changes(redis_url: str, v1: bytes,
                                                                 compile_js: Callable[[str], bytes]) -> None:
    up = compile_js(UP)
    async with mvactors.connect(redis_url) as client:
        actor_id = await client.spawn(v1, imports="counter")
        with pytest.raises(mvactors.UpgradeFailed, match=r"no export 99 \(migrate IN\)"):
            await client.upgrade(actor_id, up, migrate=(10, 99))
        with pytest.raises(mvactors.UpgradeFailed, match=r"no export 98 \(migrate OUT\)"):
            await client.upgrade(actor_id, up, migrate=(98, 11))
        with pytest.raises(TypeError, match="migrate must be"):
            await client.upgrade(actor_id, up, migrate="10:11")  # type: ignore[arg-type]
        with pytest.raises(ActorNotFound):
            await client.upgrade("nobody", up)
        assert (await client.describe(actor_id))["mailbox"] == 0


async def test_upgrade_waits_for_a_pending_host_call_then_names_it(
        redis_url: str, v1: bytes, compile_js: Callable[[str], bytes], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MVACTORS_TEST_GATES", str(tmp_path))
    up = compile_js(UP)
    async with mvactors.connect(redis_url) as client, mvactors.Worker(redis_url, IMPORTS):
        actor_id = await client.spawn(v1, imports="counter")
        await client.send(actor_id, 2, "gate:open")  # get() awaits fetch, which waits for the gate file
        with pytest.raises(mvactors.UpgradeFailed, match=r"host function 3 \(call 1\) pending"):
            await client.upgrade(actor_id, up, migrate=(10, 11), timeout=1)
        (tmp_path / "open").touch()
        assert await client.call(actor_id, 3, timeout=10) == 1  # old code: the withdrawn upgrade left no trace
        await client.upgrade(actor_id, up, migrate=(10, 11), timeout=10)
        assert await client.call(actor_id, 3, timeout=10) == 100


async def test_upgrade_under_load_runs_every_message_once_in_mailbox_order(
        redis_url: str, snapshot: Callable[[str], bytes], compile_js: Callable[[str], bytes]) -> None:
    source = (Path(__file__).resolve().parent.parent / "guest" / "ops_actor.js").read_text()
    v2 = compile_js(source.replace("seen.push(tag);", 'seen.push(tag + "@2");')
                    + "\nfunction into(v) { count = v.count; seen = v.seen; }\nvmExport(11, into);\n")
    senders = 4
    async with mvactors.connect(redis_url) as client:
        actor_id = await client.spawn(snapshot("ops_actor"), imports="counter", history=3)
        with worker(redis_url) as running:
            running.wait_for("started on")  # (its first VM compiles the engine: seconds on a loaded machine)
            sent: list[str] = []
            sent_after: set[str] = set()
            upgraded = anyio.Event()

            async def sender(n: int) -> None:  # until the upgrade returned, then 5 more
                i, extra = 0, 0
                while extra < 5:
                    tag = f"s{n}-{i}"
                    after = upgraded.is_set()
                    await client.send(actor_id, 1, tag)
                    sent.append(tag)
                    if after:
                        sent_after.add(tag)
                        extra += 1
                    i += 1
                    await anyio.sleep(0.005)

            async with anyio.create_task_group() as tg:
                for n in range(senders):
                    tg.start_soon(sender, n)
                await client.call(actor_id, 1, "first", timeout=30)
                await client.upgrade(actor_id, v2, migrate=(10, 11), timeout=30)
                upgraded.set()
            state = await client.call(actor_id, 2, timeout=30)
        seen = state["seen"]
        tags = [t.removesuffix("@2") for t in seen]
        assert sorted(tags) == sorted(["first", *sent])
        assert state["count"] == len(seen) == len(sent) + 1  # each exactly once, none lost
        on_v2 = [t.endswith("@2") for t in seen]
        assert on_v2 == sorted(on_v2)  # every old-code turn before every new-code turn
        assert on_v2[0] is False and on_v2[-1] is True and sent_after  # both codes ran under the load
        assert all(t + "@2" in seen for t in sent_after)  # sent after upgrade() returned: new code
        for n in range(senders):  # each sender's messages in the order it sent them
            mine = [t for t in tags if t.startswith(f"s{n}-")]
            assert mine == [t for t in sent if t.startswith(f"s{n}-")] and mine

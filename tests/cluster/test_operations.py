"""Operating durable actors (issue 16): inventory, workers, describe's new fields, failures nobody awaits."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import Any

import anyio
import pytest

import mvactors
from mvactors.cluster import ActorNotFound
from mvactors.cluster.keys import ActorKeys
from mvactors.cluster.wire import REPLY_CANCELLED
from tests.cluster.cluster_hosts import IMPORTS

from .failing import reply_of, send_wanting_reply
from .processes import eventually, worker

pytestmark = pytest.mark.anyio


@pytest.fixture
def ops_snapshot(snapshot: Callable[[str], bytes]) -> bytes:
    return snapshot("ops_actor")


async def _ids(client: mvactors.Client, **filters: Any) -> set[str]:
    return {info["id"] async for info in client.actors(**filters)}


async def test_describe_has_state_code_history_and_no_pause(redis_url: str, ops_snapshot: bytes) -> None:
    async with mvactors.connect(redis_url) as client:
        actor_id = await client.spawn(ops_snapshot, imports="counter", history=5)
        info = await client.describe(actor_id)
        assert info["state"] == "idle" and info["paused"] is None and info["last_failure"] is None
        assert info["code"] == hashlib.sha256(ops_snapshot).hexdigest() and info["history"] == 5
        with pytest.raises(ValueError, match="history must be"):
            await client.spawn(ops_snapshot, history=-1)


async def test_inventory_lists_filters_and_pages_every_actor(redis_url: str, ops_snapshot: bytes) -> None:
    async with mvactors.connect(redis_url) as client:
        # 600 actors: more than a page (256) in some partitions' rounds, several rounds in all.
        plain = {await client.spawn(ops_snapshot, actor_id=f"p{n}") for n in range(600)}
        counters = {await client.spawn(ops_snapshot, imports="counter", actor_id=f"c{n}") for n in range(5)}
        listed = [info async for info in client.actors()]
        assert len(listed) == 605 and {i["id"] for i in listed} == plain | counters
        assert all(i["state"] == "idle" for i in listed)
        assert await _ids(client, imports="counter") == counters
        assert await _ids(client, state="failed") == set()
        assert await _ids(client, code=listed[0]["code"][:8]) == plain | counters
        assert await _ids(client, code="0" * 64) == set()
        with pytest.raises(ValueError, match="state must be one of"):
            await _ids(client, state="broken")


async def test_inventory_index_follows_fail_then_retry_then_delete(redis_url: str, ops_snapshot: bytes) -> None:
    async with mvactors.connect(redis_url) as client:
        # No worker has the table "missing": the actor fails at adoption.
        broken = await client.spawn(ops_snapshot, imports="missing", actor_id="broken")
        fine = await client.spawn(ops_snapshot, imports="counter", actor_id="fine")
        keys = ActorKeys.of(broken)
        async with mvactors.Worker(redis_url, IMPORTS) as worker:
            await client.send(broken, 1, "x")
            assert await client.call(fine, 1, "y", timeout=10) == 1

            async def failed() -> bool:
                return (await client.describe(broken))["state"] == "failed"

            await eventually(failed, 10, "the actor to fail")
            assert await _ids(client, state="failed") == {broken}
            assert await _ids(client, state="idle") | await _ids(client, state="running") == {fine}
            assert await client.redis.zrange(keys.failed, 0, -1) == [b"broken"]
            workers = await client.workers()
            assert [w["id"] for w in workers] == [worker.worker_id]
            assert workers[0]["pid"] > 0 and workers[0]["host"] and workers[0]["seen"] >= workers[0]["started"]
        await client.retry(broken)  # out of the failed index at once; it fails again (still no table)
        assert await client.redis.zrange(keys.failed, 0, -1) == []
        async with mvactors.Worker(redis_url, IMPORTS):
            await eventually(failed, 10, "the actor to fail again")
        assert await _ids(client, state="failed") == {broken}
        await client.delete(broken)
        assert await _ids(client, state="failed") == set() and await _ids(client) == {fine}
        for index in (keys.failed, keys.all, keys.paused):
            assert await client.redis.zrange(index, 0, -1) in ([], [b"fine"])
        assert await client.workers() == []  # left on close


async def test_failures_nobody_awaits_are_logged_counted_and_described(
        redis_url: str, ops_snapshot: bytes, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mvactors")
    async with mvactors.Worker(redis_url, IMPORTS) as worker, mvactors.connect(redis_url) as client:
        actor_id = await client.spawn(ops_snapshot, imports="counter")
        await client.send(actor_id, 5, "thrown", message_id="sync-throw")
        await client.send(actor_id, 7, "x", message_id="async-reject")
        assert await client.call(actor_id, 1, "after", timeout=10) == 1

        async def described() -> Any:
            info = await client.describe(actor_id)
            failure = info["last_failure"]
            return failure if failure and failure["message_id"] == "async-reject" else None

        failure = await eventually(described, 10, "the rejected send in describe()")
        assert "rejected x" in failure["error"] and failure["awaited"] is False
        assert worker.stats()["unawaited_failures"] == 2
        text = caplog.text
        assert "message sync-throw (a send, nobody awaits it) failed" in text
        assert "message async-reject (a send, nobody awaits it) failed" in text
        assert f"adopted actor {actor_id}" in text
        with pytest.raises(mvactors.GuestError):
            await client.call(actor_id, 5, "awaited", timeout=10, message_id="awaited")
        info = await client.describe(actor_id)
        assert info["last_failure"]["message_id"] == "awaited" and info["last_failure"]["awaited"] is True
    assert f"released actor {actor_id}" in caplog.text


# ---- pause, resume, retry, cancel, snapshot ----


async def test_pause_holds_turns_and_keeps_mail_until_resume(redis_url: str, ops_snapshot: bytes) -> None:
    async with mvactors.Worker(redis_url, IMPORTS), mvactors.connect(redis_url) as client:
        actor_id = await client.spawn(ops_snapshot, imports="counter")
        assert await client.call(actor_id, 1, "a", timeout=10) == 1
        await client.pause(actor_id, "deploying")
        await client.pause(actor_id)  # idempotent
        info = await client.describe(actor_id)
        assert info["state"] == "paused" and info["paused"]["reason"] == "operator"
        assert info["paused"]["detail"] == "deploying" and info["owner"] is None
        assert await _ids(client, state="paused") == {actor_id}
        await client.send(actor_id, 1, "b")  # mail is still accepted
        with pytest.raises(TimeoutError):
            await client.call(actor_id, 1, "c", timeout=0.5)
        assert (await client.describe(actor_id))["turns"] == 1
        await client.resume(actor_id)
        assert (await client.call(actor_id, 2, timeout=10))["seen"] == ["a", "b", "c"]
        assert await _ids(client, state="paused") == set()
        with pytest.raises(ValueError, match="not paused"):
            await client.resume(actor_id)
        with pytest.raises(ValueError, match="has not failed"):
            await client.retry(actor_id)
        for request in (client.pause("nobody"), client.resume("nobody"), client.retry("nobody"),
                        client.cancel("nobody", "m"), client.snapshot("nobody")):
            with pytest.raises(ActorNotFound):
                await request


async def test_retry_repairs_an_actor_whose_import_table_was_missing(redis_url: str, ops_snapshot: bytes) -> None:
    async with mvactors.connect(redis_url) as client:
        actor_id = await client.spawn(ops_snapshot, imports="orders")
        await client.send(actor_id, 1, "first", message_id="first")
        async with mvactors.Worker(redis_url, IMPORTS):
            async def failed() -> bool:
                return (await client.describe(actor_id))["state"] == "failed"

            await eventually(failed, 10, "the actor to fail without its import table")
        assert [i["id"] async for i in client.actors(state="failed")] == [actor_id]
        with pytest.raises(ValueError, match="resume"):
            await client.resume(actor_id)
        async with mvactors.Worker(redis_url, {**IMPORTS, "orders": IMPORTS["counter"]}):
            await client.retry(actor_id)
            state = await client.call(actor_id, 2, timeout=10)
            assert state["seen"] == ["first"]  # the turn that failed ran again
            with pytest.raises(ValueError, match="has not failed"):
                await client.retry(actor_id)
        assert await _ids(client, state="failed") == set()


async def test_cancel_drops_mail_before_it_runs_and_reports_applied_mail(redis_url: str, ops_snapshot: bytes) -> None:
    async with mvactors.connect(redis_url) as client:
        actor_id = await client.spawn(ops_snapshot, imports="counter")
        await send_wanting_reply(client, actor_id, "m1", 1, "one")
        await client.send(actor_id, 1, "two", message_id="m2")
        assert await client.cancel(actor_id, "m1") is True
        assert await client.cancel(actor_id, "m1") is True  # a repeat is answered as the first
        code, reason = await reply_of(client, actor_id, "m1", 10)
        assert code == REPLY_CANCELLED and "cancelled" in reason
        with pytest.raises(ValueError, match="no message 'never'"):
            await client.cancel(actor_id, "never")
        async with mvactors.Worker(redis_url, IMPORTS):
            assert (await client.call(actor_id, 2, timeout=10))["seen"] == ["two"]
            assert await client.cancel(actor_id, "m2") is False


async def test_a_cancelled_call_raises_cancelled(redis_url: str, ops_snapshot: bytes) -> None:
    async with mvactors.connect(redis_url) as client:
        actor_id = await client.spawn(ops_snapshot)
        async with anyio.create_task_group() as tg:
            async def cancel_it() -> None:
                async def queued() -> bool:
                    return (await client.describe(actor_id))["mailbox"] == 1
                await eventually(queued, 10, "the call in the mailbox")
                [entry] = await client.redis.xrange(ActorKeys.of(actor_id).mailbox)
                assert await client.cancel(actor_id, entry[1][b"i"].decode())

            tg.start_soon(cancel_it)
            with pytest.raises(mvactors.Cancelled):
                await client.call(actor_id, 1, "x", timeout=10)


async def test_snapshot_is_a_plain_snapshot_of_the_committed_state(redis_url: str, ops_snapshot: bytes) -> None:
    async with mvactors.Worker(redis_url, IMPORTS), mvactors.connect(redis_url) as client:
        actor_id = await client.spawn(ops_snapshot, imports="counter")
        assert await client.snapshot(actor_id) == ops_snapshot
        for tag in ("a", "b"):
            await client.call(actor_id, 1, tag, timeout=10)
        data = await client.snapshot(actor_id)
    with mvactors.VM.restore(data, imports={3: lambda x: x}) as vm:
        assert list(vm.exports[2]()["seen"]) == ["a", "b"]


# ---- gas in the cluster ----


async def test_a_gas_pause_rolls_back_keeps_the_caller_waiting_and_resumes(redis_url: str, ops_snapshot: bytes) -> None:
    async with mvactors.Worker(redis_url, IMPORTS), mvactors.connect(redis_url) as client:
        actor_id = await client.spawn(ops_snapshot, imports="counter", gas=mvactors.GasPolicy(per_turn=20_000))
        assert await client.call(actor_id, 8, 10, timeout=10) == 1
        result: list[Any] = []
        async with anyio.create_task_group() as tg:
            async def heavy() -> None:
                result.append(await client.call(actor_id, 8, 100_000, timeout=30))

            tg.start_soon(heavy)

            async def paused() -> Any:
                return (await client.describe(actor_id))["paused"]

            pause = await eventually(paused, 10, "the gas pause")
            assert pause["reason"] == "gas" and "per_turn" in pause["detail"]
            info = await client.describe(actor_id)
            assert info["state"] == "paused" and info["turns"] == 1 and info["mailbox"] == 1
            await client.send(actor_id, 1, "behind")
            await client.resume(actor_id, extra_gas=10_000_000)
        assert result == [2]
        assert (await client.call(actor_id, 2, timeout=10))["seen"] == ["behind"]


async def test_cancel_drops_the_message_a_gas_pause_holds(redis_url: str, ops_snapshot: bytes) -> None:
    async with mvactors.Worker(redis_url, IMPORTS), mvactors.connect(redis_url) as client:
        actor_id = await client.spawn(ops_snapshot, imports="counter", gas=mvactors.GasPolicy(per_turn=20_000))
        await send_wanting_reply(client, actor_id, "heavy", 8, 100_000)
        await client.send(actor_id, 1, "next", message_id="next")

        async def paused() -> Any:
            return (await client.describe(actor_id))["paused"]

        assert (await eventually(paused, 10, "the gas pause"))["message_id"] == "heavy"
        assert await client.cancel(actor_id, "heavy") is True
        assert (await reply_of(client, actor_id, "heavy", 10)).code == REPLY_CANCELLED
        assert (await client.call(actor_id, 2, timeout=10))["seen"] == ["next"]


async def test_a_refilling_quota_resumes_by_itself_in_the_cluster(
        redis_url: str, ops_snapshot: bytes, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mvactors")
    async with mvactors.Worker(redis_url, IMPORTS), mvactors.connect(redis_url) as client:
        gas = mvactors.GasPolicy(quota=60_000, refill_per_second=100_000)
        actor_id = await client.spawn(ops_snapshot, imports="counter", gas=gas)
        # spin(5000) costs 55,015 instructions: the second runs out of the quota, pauses (released to
        # Redis with "until" on Redis's clock), and runs once the bucket is full again (~0.6 s), with no
        # resume().
        assert await client.call(actor_id, 8, 5000, timeout=10) == 1
        assert await client.call(actor_id, 8, 5000, timeout=20) == 2
        assert "quota budget" in caplog.text and "paused" in caplog.text
        info = await client.describe(actor_id)
        assert info["paused"] is None and info["state"] != "paused"
        assert await _ids(client, state="paused") == set()


async def test_cancel_paused_in_process(ops_snapshot: bytes) -> None:
    async with mvactors.Runtime() as rt:
        actor = await rt.spawn(ops_snapshot, imports={3: lambda x: x}, gas=mvactors.GasPolicy(per_turn=20_000))
        heavy = actor.submit(8, 100_000)
        light = actor.submit(1, "light")

        async def paused() -> bool:
            return actor.pause is not None

        await eventually(paused, 10, "the gas pause")
        await actor.cancel_paused()
        with pytest.raises(mvactors.Cancelled):
            await heavy.wait()
        assert await light.wait() == 1
        with pytest.raises(mvactors.ActorError, match="not paused"):
            await actor.cancel_paused()


async def test_pause_and_resume_survive_a_worker_kill_9(redis_url: str, ops_snapshot: bytes) -> None:
    async with mvactors.connect(redis_url) as client:
        actor_id = await client.spawn(ops_snapshot, imports="counter")
        with worker(redis_url) as first:
            assert await client.call(actor_id, 1, "before", timeout=30) == 1
            await client.pause(actor_id)
            await client.send(actor_id, 1, "while-paused-1")
            first.kill()
        await client.send(actor_id, 1, "while-paused-2")
        with worker(redis_url) as second:
            second.wait_for("started on")
            with pytest.raises(TimeoutError):  # a live worker, mail waiting: still no turn runs
                await client.call(actor_id, 1, "held", timeout=1.5)
            info = await client.describe(actor_id)
            assert info["state"] == "paused" and info["turns"] == 1 and info["mailbox"] == 3
            await client.resume(actor_id)
            state = await client.call(actor_id, 2, timeout=30)
            assert state["seen"] == ["before", "while-paused-1", "while-paused-2", "held"]
            assert second.proc.poll() is None


async def test_an_upgrade_nobody_can_reach_names_the_missing_worker(redis_url: str, ops_snapshot: bytes) -> None:
    async with mvactors.connect(redis_url) as client:  # no worker runs table "counter"
        actor_id = await client.spawn(ops_snapshot, imports="counter")
        with pytest.raises(mvactors.UpgradeFailed, match=r"no worker took it up.*'counter'.*mvactors workers"):
            await client.upgrade(actor_id, ops_snapshot, timeout=0.3)
        info = await client.describe(actor_id)
        assert info["mailbox"] == 0 and info["state"] == "idle"  # the barrier was withdrawn

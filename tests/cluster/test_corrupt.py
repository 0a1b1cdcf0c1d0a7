"""A corrupt actor record (or journal entry) in Redis fails that actor, with the reason, and only it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

import mvactors
from mvactors.actors import ActorRecord
from mvactors.cluster import ActorFailedInRedis
from mvactors.cluster.crash import CRASH_EXIT_CODE
from mvactors.cluster.keys import ActorKeys
from mvactors.cluster.wire import stored_record

from .cluster_hosts import IMPORTS
from .processes import eventually, worker

pytestmark = pytest.mark.anyio


@pytest.fixture
def actor_snapshot(snapshot: Callable[[str], bytes]) -> bytes:
    return snapshot("cluster_actor")


def garbage(record: bytes) -> bytes:
    return b"\xc1 not a record " + record[:40]


def truncated(record: bytes) -> bytes:
    return record[: len(record) // 2]


def truncated_snapshot(record: bytes) -> bytes:
    """A well-formed record whose VM snapshot lost its second half."""
    decoded = ActorRecord.decode(stored_record(record))
    return dataclasses.replace(decoded, snapshot=decoded.snapshot[: len(decoded.snapshot) // 2]).encode()


@pytest.mark.parametrize("corrupt", [garbage, truncated, truncated_snapshot])
async def test_a_corrupt_record_fails_that_actor_with_a_reason_and_the_others_run_on(
        redis_url: str, actor_snapshot: bytes, corrupt: Callable[[bytes], bytes]) -> None:
    async with mvactors.connect(redis_url) as client:
        broken = await client.spawn(actor_snapshot, imports="counter", actor_id="broken")
        healthy = await client.spawn(actor_snapshot, imports="counter", actor_id="healthy")
        async with mvactors.Worker(redis_url, IMPORTS):
            for actor_id in (broken, healthy):
                assert await client.call(actor_id, 1, "s", 1, timeout=10) == 1
        # (handed back to Redis on close)
        key = ActorKeys.of(broken).record
        await client.redis.set(key, corrupt(bytes(await client.redis.get(key))))
        async with mvactors.Worker(redis_url, IMPORTS) as worker:
            with anyio.fail_after(20):  # an error, not a hang or a retry loop
                with pytest.raises(ActorFailedInRedis) as caught:
                    await client.call(broken, 1, "s", 2)
            reason = (await client.describe(broken))["failed"]
            assert reason and caught.value.reason == reason
            if corrupt is truncated_snapshot:
                assert "snapshot is truncated" in reason, reason
            else:
                assert "RecordCorrupt" in reason and "record" in reason, reason
            with pytest.raises(ActorFailedInRedis):  # it stays failed: sends are refused at once
                await client.send(broken, 1, "s", 3)

            assert await client.call(healthy, 1, "s", 2, timeout=10) == 2
            assert (await client.call(healthy, 2, timeout=10))["count"] == 2
            assert worker.stats()["failed"] == 1


async def test_a_corrupt_journal_entry_fails_that_actor_not_the_worker(
        redis_url: str, actor_snapshot: bytes, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    log = tmp_path / "effects.log"
    monkeypatch.setenv("MVACTORS_TEST_LOG", str(log))
    async with mvactors.connect(redis_url) as client:
        broken = await client.spawn(actor_snapshot, imports="counter", actor_id="broken")
        healthy = await client.spawn(actor_snapshot, imports="counter", actor_id="healthy")
        await client.send(broken, 3, "o1", 0)
        # The charge ran and is journaled, the guest has not seen it: the record awaits it.
        with worker(redis_url, "--lease-ms", "400", env={"MVACTORS_CRASH_AT": "after-journal"}) as crashing:
            assert await anyio.to_thread.run_sync(crashing.wait, 30) == CRASH_EXIT_CODE, crashing.output()
        await client.redis.hset(ActorKeys.of(broken).journal, "1", b"\xc1 garbage")
        async with mvactors.Worker(redis_url, IMPORTS) as taker:
            async def failed() -> str | None:
                return (await client.describe(broken))["failed"]

            reason = await eventually(failed, 30, "the actor to fail")
            assert "journal" in reason, reason
            assert await client.call(healthy, 1, "s", 1, timeout=10) == 1
            assert taker.stats()["failed"] == 1
    assert log.read_text().splitlines() == [f"charge o1 {broken}/1"]  # not charged again


@pytest.mark.parametrize(("field", "value"), [("t", b"many"), ("p", b"\xff\xfe")])
async def test_a_corrupt_field_of_the_actor_hash_fails_that_actor(redis_url: str, actor_snapshot: bytes,
                                                                  field: str, value: bytes) -> None:
    # (t: committed turns, p: mailbox position)
    async with mvactors.connect(redis_url) as client:
        broken = await client.spawn(actor_snapshot, imports="counter", actor_id="broken")
        healthy = await client.spawn(actor_snapshot, imports="counter", actor_id="healthy")
        await client.redis.hset(ActorKeys.of(broken).state, field, value)
        async with mvactors.Worker(redis_url, IMPORTS) as worker:
            with anyio.fail_after(20), pytest.raises(ActorFailedInRedis, match="is corrupt"):
                await client.call(broken, 1, "s", 1)
            assert await client.call(healthy, 1, "s", 1, timeout=10) == 1
            assert worker.stats()["failed"] == 1

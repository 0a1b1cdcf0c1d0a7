"""A worker in the test's own event loop: turns, replies, errors, handoff, journal."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import mvactors
from mvactors.actors import ActorRecord
from mvactors.cluster import ActorFailedInRedis
from mvactors.cluster.keys import ActorKeys
from mvactors.cluster.wire import stored_record
from tests.cluster.cluster_hosts import IMPORTS

pytestmark = pytest.mark.anyio


@pytest.fixture
def actor_snapshot(snapshot: Callable[[str], bytes]) -> bytes:
    return snapshot("cluster_actor")


async def test_call_runs_a_committed_turn_and_returns_its_result(redis_url: str, actor_snapshot: bytes) -> None:
    async with mvactors.Worker(redis_url, IMPORTS) as worker, mvactors.connect(redis_url) as client:
        actor_id = await client.spawn(actor_snapshot, imports="counter")
        assert await client.call(actor_id, 1, "a", 1, timeout=10) == 1
        assert await client.call(actor_id, 1, "a", 2, timeout=10) == 2
        info = await client.describe(actor_id)
        assert info["turns"] == 2 and info["mailbox"] == 0 and info["owner"] == worker.worker_id
        state = await client.call(actor_id, 2, timeout=10)
        assert state["count"] == 2 and state["problems"] == []


async def test_guest_throw_is_a_guest_error(redis_url: str, actor_snapshot: bytes) -> None:
    async with mvactors.Worker(redis_url, IMPORTS), mvactors.connect(redis_url) as client:
        actor_id = await client.spawn(actor_snapshot, imports="counter")
        with pytest.raises(mvactors.GuestError) as caught:
            await client.call(actor_id, 5, "nope", timeout=10)
        assert caught.value.value == "nope"


async def test_sends_are_applied_once_in_order_and_state_survives_handoff(redis_url: str,
                                                                           actor_snapshot: bytes) -> None:
    async with mvactors.connect(redis_url) as client:
        actor_id = await client.spawn(actor_snapshot, imports="counter")
        async with mvactors.Worker(redis_url, IMPORTS):
            for seq in range(1, 51):
                await client.send(actor_id, 1, "s", seq, message_id=f"m{seq}")
            await client.send(actor_id, 1, "s", 50, message_id="m50")  # a retried send
            assert (await client.call(actor_id, 2, timeout=10))["count"] == 50
        assert (await client.describe(actor_id))["owner"] is None  # handed over on close
        async with mvactors.Worker(redis_url, IMPORTS):
            state = await client.call(actor_id, 2, timeout=10)
        assert state["count"] == 50 and state["problems"] == []
        assert (await client.describe(actor_id))["turns"] == 52


async def test_a_hibernated_actor_keeps_no_empty_fields_and_a_record_that_adopts(redis_url: str,
                                                                                  actor_snapshot: bytes) -> None:
    async with mvactors.connect(redis_url) as client:
        actor_id = await client.spawn(actor_snapshot, imports="counter")
        async with mvactors.Worker(redis_url, IMPORTS):
            for seq in range(1, 6):
                await client.send(actor_id, 1, "s", seq)
            assert (await client.call(actor_id, 2, timeout=10))["count"] == 5
        keys = ActorKeys.of(actor_id)
        fields = await client.redis.hgetall(keys.state)
        assert b"o" not in fields and b"f" not in fields and all(fields.values()), fields  # released, a record
        stored = await client.redis.get(keys.record)
        assert stored.startswith(b"Z")  # compressed: it sleeps in Redis
        saved = ActorRecord.decode(stored_record(stored))
    async with mvactors.Runtime() as rt:
        actor = await rt.adopt(saved, "copy", IMPORTS["counter"])
        assert (await actor.submit(2).wait())["count"] == 5


async def test_unknown_import_table_fails_the_actor_with_a_reason(redis_url: str, actor_snapshot: bytes) -> None:
    async with mvactors.Worker(redis_url, IMPORTS), mvactors.connect(redis_url) as client:
        actor_id = await client.spawn(actor_snapshot, imports="no-such-table")
        with pytest.raises(ActorFailedInRedis, match="no worker import table named 'no-such-table'"):
            await client.call(actor_id, 1, "a", 1, timeout=10)
        assert "no-such-table" in (await client.describe(actor_id))["failed"]


async def test_journaled_call_and_timer(redis_url: str, actor_snapshot: bytes, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "effects.log"
    monkeypatch.setenv("MVACTORS_TEST_LOG", str(log))
    async with mvactors.Worker(redis_url, IMPORTS), mvactors.connect(redis_url) as client:
        actor_id = await client.spawn(actor_snapshot, imports="counter")
        assert await client.call(actor_id, 3, "o1", 50, timeout=10) == "receipt-o1"
        assert (await client.call(actor_id, 2, timeout=10))["done"] == ["o1"]
    lines = log.read_text().splitlines()
    assert lines == [f"charge o1 {actor_id}/1", "effect charged o1 receipt-o1"]


async def test_an_actor_dropped_while_it_is_being_adopted_leaves_no_copy_behind(
        redis_url: str, actor_snapshot: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    # The lease can lapse while adopt() yields; the copy the runtime already runs must go with it,
    # or the next adoption of that actor fails with ActorExists and marks it failed in Redis.
    async with mvactors.Worker(redis_url, IMPORTS, lease_ms=300) as worker, mvactors.connect(redis_url) as client:
        real_adopt = worker.runtime.adopt
        dropped: list[str] = []

        async def adopt_and_lose_the_lease(record: Any, actor_id: str, *args: Any, **kwargs: Any) -> Any:
            actor = await real_adopt(record, actor_id, *args, **kwargs)
            if not dropped:  # the crash point: once, right after the runtime took the actor
                dropped.append(actor_id)
                worker._drop(worker._owned[actor_id], "test: the lease lapsed during adoption")
            return actor

        monkeypatch.setattr(worker.runtime, "adopt", adopt_and_lose_the_lease)
        actor_id = await client.spawn(actor_snapshot, imports="counter")
        assert await client.call(actor_id, 1, "a", 1, timeout=20) == 1
        assert dropped == [actor_id]
        info = await client.describe(actor_id)
        assert info["failed"] is None and info["turns"] == 1


async def test_spawn_takes_a_snapshot_path_and_refuses_what_is_no_snapshot(
        redis_url: str, actor_snapshot: bytes, tmp_path: Path) -> None:
    path = tmp_path / "actor.mvm-bc"
    path.write_bytes(actor_snapshot)
    async with mvactors.connect(redis_url) as client:
        actor_id = await client.spawn(path, imports="counter")
        async with mvactors.Worker(redis_url, IMPORTS):
            assert await client.call(actor_id, 1, "s1", 1, timeout=30) is not None
        with pytest.raises(mvactors.MicroviumError, match="truncated"):
            await client.spawn(b"\x07\x00", imports="counter")
        with pytest.raises(FileNotFoundError):
            await client.spawn(tmp_path / "missing.mvm-bc")
        with pytest.raises(TypeError, match="snapshot must be"):
            await client.spawn(3.5)  # type: ignore[arg-type]

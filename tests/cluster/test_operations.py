"""Operating durable actors (issue 16): inventory, workers, describe's new fields, failures nobody awaits."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import Any

import pytest

import mvactors
from mvactors.cluster.keys import ActorKeys
from tests.cluster.cluster_hosts import IMPORTS

from .processes import eventually

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

"""A full Redis (``noeviction`` at a small ``maxmemory``): clients fail at once, workers wait it out.

The servers here have ``maxmemory 4mb``; a test fills them with junk keys until Redis answers
OOM (then lowers maxmemory 512 KiB below what is used, so that a closed connection's freed
buffers do not end it by chance), and frees memory by deleting the junk.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

import anyio
import pytest
import redis.asyncio
import redis.exceptions

import mvactors
from mvactors.cluster import RedisOutOfMemory
from mvactors.cluster.keys import ActorKeys
from mvactors.testing import RedisServer
from tests.cluster.cluster_hosts import IMPORTS

from .processes import eventually, worker

pytestmark = pytest.mark.anyio

_JUNK = b"x" * 65536  # 64 KiB per junk key: a 4 MB server fills in about 50 of them


@pytest.fixture
def actor_snapshot(snapshot: Callable[[str], bytes]) -> bytes:
    return snapshot("cluster_actor")


@pytest.fixture
async def small_redis() -> AsyncIterator[RedisServer]:
    with RedisServer(maxmemory="4mb") as server:
        yield server


async def fill(url: str) -> None:
    """Write junk until Redis refuses writes with OOM, and keep it so.

    (A refused 64 KiB write alone is not enough: its own query buffer is what put Redis over
    maxmemory, and that is freed after the refusal; smaller writes then close the gap.)"""
    admin = redis.asyncio.Redis.from_url(url)
    n = 0
    try:
        for size in (len(_JUNK), 1024, 16):
            while n < 100_000:
                n += 1
                try:
                    await admin.set(f"junk:{n}", _JUNK[:size])
                except redis.exceptions.OutOfMemoryError:
                    break
        # Connections come and go (a closed one frees its buffers, tens of KiB): keep Redis over
        # its limit by 512 KiB, so it stays full until the junk is deleted.
        used = int((await admin.info("memory"))["used_memory"])
        await admin.config_set("maxmemory", used - 512 * 1024)
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            await admin.set("junk:probe", "x")
    finally:
        await admin.aclose()


async def free(url: str) -> None:
    admin = redis.asyncio.Redis.from_url(url)
    try:
        junk = [key async for key in admin.scan_iter("junk:*")]
        if junk:
            await admin.delete(*junk)
        await admin.config_set("maxmemory", "4mb")
    finally:
        await admin.aclose()


async def test_send_call_and_spawn_fail_at_once_naming_oom_and_nothing_is_half_written(
        small_redis: RedisServer, actor_snapshot: bytes) -> None:
    url = small_redis.url
    async with mvactors.connect(url) as client:
        actor_id = await client.spawn(actor_snapshot, imports="counter")
        await fill(url)
        keys = ActorKeys.of(actor_id)
        for attempt in (
                lambda: client.send(actor_id, 1, "s", 1, message_id="m1"),
                lambda: client.call(actor_id, 1, "s", 1, message_id="m1", timeout=5),
                lambda: client.spawn(actor_snapshot, imports="counter", actor_id="another")):
            started = time.monotonic()
            with pytest.raises(RedisOutOfMemory) as caught:
                await attempt()
            assert time.monotonic() - started < 1.0  # at once: no retry storm
            message = str(caught.value)
            assert "OOM" in message and "maxmemory" in message and "same message_id" in message
            assert caught.value.code == "MVA_REDIS_OOM"
        assert await client.redis.xlen(keys.mailbox) == 0  # nothing half-written
        assert not await client.redis.exists(keys.dedupe)
        assert not await client.redis.exists(ActorKeys.of("another").state)
        await free(url)
        async with mvactors.Worker(url, IMPORTS):
            await client.send(actor_id, 1, "s", 1, message_id="m1")  # the same ID: applied once
            assert (await client.call(actor_id, 2, timeout=10))["count"] == 1


async def test_a_worker_keeps_its_actors_through_oom_applies_nothing_uncommitted_and_resumes(
        small_redis: RedisServer, actor_snapshot: bytes, caplog: pytest.LogCaptureFixture) -> None:
    url = small_redis.url
    sent = 1
    async with mvactors.connect(url) as client, mvactors.Worker(url, IMPORTS, lease_ms=1000) as w:
        actor_id = await client.spawn(actor_snapshot, imports="counter")
        assert await client.call(actor_id, 1, "s", 1, message_id="s:1", timeout=10) == 1
        refused = anyio.Event()
        resumed = anyio.Event()

        async def feed() -> None:  # until 50 sends after memory is freed; the caller's own retry
            nonlocal sent
            after = 0
            while after < 50:
                seq = sent + 1
                after += resumed.is_set()
                while True:
                    try:
                        await client.send(actor_id, 1, "s", seq, message_id=f"s:{seq}")
                        sent = seq
                        break
                    except RedisOutOfMemory:
                        refused.set()
                        await resumed.wait()

        async with anyio.create_task_group() as tg:
            tg.start_soon(feed)
            await eventually(lambda: _true((w.stats()["committed_turns"]) >= 20), 30, "some turns committed")
            await fill(url)
            with anyio.fail_after(30):
                await refused.wait()
            turns_when_full = (await client.describe(actor_id))["turns"]
            # Hold it full for three lease TTLs: the leases must outlive it (renewals are allow-oom).
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline:
                stats = w.stats()
                assert stats["turns"] - stats["committed_turns"] <= 1, stats  # nothing it cannot commit
                assert w.actors == [actor_id]
                await anyio.sleep(0.1)
            info = await client.describe(actor_id)
            assert info["owner"] == w.worker_id and info["turns"] <= turns_when_full + 1
            await free(url)
            resumed.set()
        state = await client.call(actor_id, 2, timeout=30)
        assert state["count"] == sent and state["problems"] == [] and state["last"] == {"s": sent}
        assert w.stats()["dropped"] == 0 and w.stats()["acquired"] == 1
    assert any("full" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")


async def test_a_worker_started_while_redis_is_full_stays_up_and_serves_once_memory_is_freed(
        small_redis: RedisServer, actor_snapshot: bytes) -> None:
    url = small_redis.url
    async with mvactors.connect(url) as client:
        actors = [await client.spawn(actor_snapshot, imports="counter") for _ in range(3)]
        for actor_id in actors:
            for seq in range(1, 6):
                await client.send(actor_id, 1, "s", seq, message_id=f"s:{seq}")
        await fill(url)
        with worker(url, "--lease-ms", "1000") as proc:
            proc.wait_for("started")
            proc.wait_for("Redis is full")
            assert proc.proc.poll() is None
            assert [(await client.describe(a))["turns"] for a in actors] == [0, 0, 0]
            await free(url)

            async def all_applied() -> bool:
                return [(await client.describe(a))["turns"] for a in actors] == [5, 5, 5]

            await eventually(all_applied, 30, "every message applied once memory was freed")
            for actor_id in actors:
                state = await client.call(actor_id, 2, timeout=10)
                assert state["count"] == 5 and state["problems"] == []
            assert proc.proc.poll() is None


async def _true(value: bool) -> bool:
    return value

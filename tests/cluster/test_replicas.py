"""``replica_acks``: on a master with one replica, nothing is acknowledged, and no reply is readable,
before the replica holds it.  The replica is made to lag with SIGSTOP (on loopback it never does)."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import anyio
import pytest

import mvactors
from mvactors.cluster import NotReplicated
from mvactors.cluster.crash import CRASH_EXIT_CODE
from mvactors.cluster.keys import ActorKeys
from mvactors.cluster.wire import REPLY_FAILED, REPLY_OK
from mvactors.testing import RedisServer, ReplicatedRedis
from tests.cluster.cluster_hosts import IMPORTS

from .failing import reply_of, send_wanting_reply
from .processes import eventually, worker

pytestmark = pytest.mark.anyio


@pytest.fixture
def actor_snapshot(snapshot: Callable[[str], bytes]) -> bytes:
    return snapshot("cluster_actor")


@pytest.fixture
def replicated() -> Iterator[ReplicatedRedis]:
    with ReplicatedRedis(1) as pair:
        yield pair


@contextmanager
def stopped(server: RedisServer) -> Iterator[None]:
    """The server SIGSTOPped: it reads nothing from its master (a lagging replica)."""
    assert server.process is not None
    server.process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        server.process.send_signal(signal.SIGCONT)


async def test_a_send_returns_only_once_the_replica_holds_it_and_a_timeout_is_not_an_ack(
        replicated: ReplicatedRedis, actor_snapshot: bytes) -> None:
    async with mvactors.connect(replicated.url, replica_acks=1) as client:
        actor_id = await client.spawn(actor_snapshot, imports="counter")
        await client.send(actor_id, 1, "s", 1, message_id="m1")
        with stopped(replicated.replicas[0]):
            started = time.monotonic()
            with pytest.raises(NotReplicated) as caught:
                await client.send(actor_id, 1, "s", 2, message_id="m2")
            assert time.monotonic() - started < 3
            assert caught.value.message_id == "m2" and "replica_acks=1" in str(caught.value)
            # A repeat while the replica still lags is refused the same way, not acknowledged.
            with pytest.raises(NotReplicated):
                await client.send(actor_id, 1, "s", 2, message_id="m2")
        await client.send(actor_id, 1, "s", 2, message_id="m2")  # the same ID: accepted once
        async with mvactors.Worker(replicated.url, IMPORTS, replica_acks=1):
            state = await client.call(actor_id, 2, timeout=10)
        assert state["count"] == 2 and state["problems"] == [] and state["last"] == {"s": 2}


async def test_a_reply_is_not_readable_until_the_replica_holds_its_commit(
        replicated: ReplicatedRedis, actor_snapshot: bytes) -> None:
    async with mvactors.connect(replicated.url) as client, \
            mvactors.Worker(replicated.url, IMPORTS, replica_acks=1) as w:
        actor_id = await client.spawn(actor_snapshot, imports="counter")
        assert await client.call(actor_id, 1, "s", 1, timeout=10) == 1
        keys = ActorKeys.of(actor_id)
        with stopped(replicated.replicas[0]):
            await send_wanting_reply(client, actor_id, "m2", 1, "s", 2)

            async def committed_on_the_master() -> bool:
                return int(await client.redis.hget(keys.state, "t") or 0) == 2  # type: ignore[misc]

            await eventually(committed_on_the_master, 10, "the turn's commit on the master")
            # Hold it past several WAIT timeouts: the worker retries, and nothing becomes readable.
            deadline = time.monotonic() + 2.5
            while time.monotonic() < deadline:
                assert not await client.redis.exists(keys.reply("m2"))
                assert await client.redis.hexists(keys.state, "y")  # type: ignore[misc]  # staged
                await anyio.sleep(0.1)  # sampling a span of time, not waiting for an event
            assert w.actors == [actor_id]
        assert await reply_of(client, actor_id, "m2", 10) == (REPLY_OK, 2)
        assert not await client.redis.hexists(keys.state, "y")  # type: ignore[misc]


async def test_an_adopting_worker_publishes_the_replies_its_dead_owner_staged(
        replicated: ReplicatedRedis, actor_snapshot: bytes) -> None:
    async with mvactors.connect(replicated.url, replica_acks=1) as client:
        actor_id = await client.spawn(actor_snapshot, imports="counter")
        await send_wanting_reply(client, actor_id, "m1", 1, "s", 1)
        with worker(replicated.url, "--replica-acks", "1", "--lease-ms", "600",
                    env={"MVACTORS_CRASH_AT": "before-publish"}) as first:
            assert first.wait(30) == CRASH_EXIT_CODE  # its commit is replicated, the reply only staged
        keys = ActorKeys.of(actor_id)
        assert not await client.redis.exists(keys.reply("m1"))
        assert await client.redis.hexists(keys.state, "y")  # type: ignore[misc]
        with worker(replicated.url, "--replica-acks", "1", "--lease-ms", "600"):
            assert await reply_of(client, actor_id, "m1", 15) == (REPLY_OK, 1)
            state = await client.call(actor_id, 2, timeout=10)
        assert state["count"] == 1 and (await client.describe(actor_id))["turns"] == 2


async def test_describe_with_replica_acks_waits_for_the_replica(
        replicated: ReplicatedRedis, actor_snapshot: bytes) -> None:
    async with mvactors.connect(replicated.url, replica_acks=1) as client:
        actor_id = await client.spawn(actor_snapshot, imports="counter")
        with stopped(replicated.replicas[0]), pytest.raises(NotReplicated):
            await client.describe(actor_id)
        assert (await client.describe(actor_id))["turns"] == 0



async def test_operations_with_replica_acks_return_only_once_the_replica_holds_them(
        replicated: ReplicatedRedis, actor_snapshot: bytes) -> None:
    # An operator's pause or cancel is as durable as a send: a failover right after it keeps it.
    async with mvactors.connect(replicated.url, replica_acks=1) as client:
        actor_id = await client.spawn(actor_snapshot, imports="counter")
        message_id = await client.send(actor_id, 1, "s", 1)
        with stopped(replicated.replicas[0]):
            with pytest.raises(NotReplicated):
                await client.pause(actor_id)
            with pytest.raises(NotReplicated):
                await client.cancel(actor_id, message_id)
        # Both ran on the master; their repeats are recognised and now acknowledged.
        await client.pause(actor_id)
        assert await client.cancel(actor_id, message_id) is True
        assert (await client.describe(actor_id))["state"] == "paused"
        await client.resume(actor_id)
        await client.delete(actor_id)


async def test_a_failure_is_not_readable_by_its_caller_until_the_replica_holds_it(
        replicated: ReplicatedRedis, actor_snapshot: bytes) -> None:
    # The worker has no "orders" table: the actor fails at adoption.  A caller told "failed" by a
    # master that then fails over would see the message run after all.
    async with mvactors.connect(replicated.url) as client:
        actor_id = await client.spawn(actor_snapshot, imports="orders")
        await send_wanting_reply(client, actor_id, "m1", 1, "s", 1)
        keys = ActorKeys.of(actor_id)
        with stopped(replicated.replicas[0]):
            async with mvactors.Worker(replicated.url, IMPORTS, replica_acks=1):
                async def failed_on_the_master() -> bool:
                    return bool(await client.redis.hexists(keys.state, "x"))  # type: ignore[misc]

                await eventually(failed_on_the_master, 10, "the failure written on the master")
                assert not await client.redis.exists(keys.reply("m1"))
                assert await client.redis.hexists(keys.state, "y")  # type: ignore[misc]  # staged
                replicated.replicas[0].process.send_signal(signal.SIGCONT)  # type: ignore[union-attr]
                code, reason = await reply_of(client, actor_id, "m1", 15)
        assert code == REPLY_FAILED and "orders" in reason
        assert not await client.redis.hexists(keys.state, "y")  # type: ignore[misc]

"""The client side of the contract, with no worker running: spawn, send, describe, delete, errors."""

from __future__ import annotations

import anyio
import pytest

import mvactors
from mvactors.cluster import ActorExistsInRedis, ActorNotFound, RedisUnreachable
from mvactors.errors import ClusterError, MicroviumError
from mvactors.testing import RedisServer
from mvactors.testing.redis import free_port

pytestmark = pytest.mark.anyio

SNAPSHOT = b"not run by any worker in this file"


async def test_spawn_stores_the_actor_and_describe_reports_it(redis_url: str) -> None:
    async with mvactors.connect(redis_url) as client:
        actor_id = await client.spawn(SNAPSHOT, imports="counter")
        info = await client.describe(actor_id)
        assert info["owner"] is None and info["turns"] == 0 and info["mailbox"] == 0
        assert info["imports"] == "counter" and info["failed"] is None


async def test_spawning_an_existing_id_is_a_clear_error(redis_url: str) -> None:
    async with mvactors.connect(redis_url) as client:
        await client.spawn(SNAPSHOT, actor_id="a1")
        with pytest.raises(ActorExistsInRedis, match="'a1' already exists"):
            await client.spawn(SNAPSHOT, actor_id="a1")


async def test_sends_are_durable_and_deduplicated_by_message_id(redis_url: str) -> None:
    async with mvactors.connect(redis_url) as client:
        actor_id = await client.spawn(SNAPSHOT)
        await client.send(actor_id, 1, "x", message_id="m1")
        await client.send(actor_id, 1, "x", message_id="m1")
        await client.send(actor_id, 1, {"k": [1, 2.5, None, mvactors.null, b"\x00"]})
        assert (await client.describe(actor_id))["mailbox"] == 2


async def test_unknown_actor_is_a_key_error(redis_url: str) -> None:
    async with mvactors.connect(redis_url) as client:
        for request in (client.describe("nobody"), client.send("nobody", 1), client.delete("nobody")):
            with pytest.raises(KeyError, match="no actor 'nobody'") as caught:
                await request
            assert isinstance(caught.value, ActorNotFound) and isinstance(caught.value, MicroviumError)


async def test_unsupported_arguments_fail_at_send_with_type_error(redis_url: str) -> None:
    async with mvactors.connect(redis_url) as client:
        actor_id = await client.spawn(SNAPSHOT)
        with pytest.raises(TypeError, match="cannot send a object"):
            await client.send(actor_id, 1, object())
        with pytest.raises(TypeError, match="cannot send"):
            await client.send(actor_id, 1, 2**70)
        assert (await client.describe(actor_id))["mailbox"] == 0


async def test_delete_removes_everything(redis_node: RedisServer) -> None:
    async with mvactors.connect(redis_node.url) as client:
        actor_id = await client.spawn(SNAPSHOT)
        await client.send(actor_id, 1, 5)
        await client.delete(actor_id)
        with pytest.raises(ActorNotFound):
            await client.describe(actor_id)
        keys = [k for k in await client.redis.keys("*") if b"hint" not in k]
        assert keys == [], keys


async def test_unreachable_redis_is_a_cluster_error() -> None:
    with pytest.raises(RedisUnreachable, match="unreachable") as caught:
        async with mvactors.connect(f"redis://127.0.0.1:{free_port()}/0"):
            pass
    assert isinstance(caught.value, ClusterError)


async def test_redis_going_away_mid_session_is_a_cluster_error(redis_node: RedisServer) -> None:
    async with mvactors.connect(redis_node.url) as client:
        actor_id = await client.spawn(SNAPSHOT)
        redis_node.kill()
        with pytest.raises(RedisUnreachable):
            await client.send(actor_id, 1)
        redis_node.start()
        await client.send(actor_id, 1)  # reconnects by itself once Redis is back
        assert (await client.describe(actor_id))["mailbox"] == 1


async def test_the_client_works_on_a_redis_cluster() -> None:
    from mvactors.testing import redis_cluster

    async with redis_cluster() as url, mvactors.connect(url) as client:
        ids = [await client.spawn(SNAPSHOT, actor_id=f"actor-{i}") for i in range(20)]
        for actor_id in ids:
            await client.send(actor_id, 1, actor_id)
        assert [(await client.describe(a))["mailbox"] for a in ids] == [1] * 20
        await client.delete(ids[0])
        with pytest.raises(ActorNotFound):
            await client.describe(ids[0])


async def test_the_dedupe_window_is_a_setting(redis_url: str) -> None:
    with pytest.raises(ValueError, match="dedupe_window_ms"):
        mvactors.connect(redis_url, dedupe_window_ms=10)
    async with mvactors.connect(redis_url, dedupe_window_ms=1000) as client:
        actor_id = await client.spawn(SNAPSHOT, imports="counter")
        await client.send(actor_id, 1, "s", 1, message_id="m1")
        await client.send(actor_id, 1, "s", 1, message_id="m1")  # within the window: not again
        assert (await client.describe(actor_id))["mailbox"] == 1
        await anyio.sleep(1.1)  # the window itself is what is tested: let it pass
        await client.send(actor_id, 1, "s", 2, message_id="m2")  # forgets IDs older than the window
        await client.send(actor_id, 1, "s", 1, message_id="m1")
        assert (await client.describe(actor_id))["mailbox"] == 3

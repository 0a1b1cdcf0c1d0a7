"""The test helpers start real servers: a single node with AOF, and a 3-master cluster."""

from __future__ import annotations

import pytest
import redis
import redis.asyncio
import redis.cluster

from mvactors.testing import RedisServer, redis_cluster, redis_server


def test_sync_server_yields_a_working_url_and_stops() -> None:
    with redis_server() as url:
        client = redis.Redis.from_url(url)
        assert client.ping()
        assert client.config_get("appendfsync") == {"appendfsync": "always"}
        client.close()
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(url, retry=None, socket_connect_timeout=0.5).ping()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # redis.asyncio needs asyncio
async def test_async_server() -> None:
    async with redis_server() as url:
        client = redis.asyncio.Redis.from_url(url)
        await client.set("k", "v")
        assert await client.get("k") == b"v"
        await client.aclose()


def test_acknowledged_writes_survive_kill_9_and_restart() -> None:
    with RedisServer() as server:
        client = redis.Redis.from_url(server.url)
        for i in range(100):
            client.rpush("log", i)
        server.kill()
        server.restart()
        assert [int(x) for x in client.lrange("log", 0, -1)] == list(range(100))
        client.close()


def test_cluster_of_three_masters() -> None:
    with redis_cluster() as url:
        assert url.startswith("redis+cluster://")
        client = redis.cluster.RedisCluster.from_url(url.replace("redis+cluster://", "redis://"))
        assert len(client.get_primaries()) == 3
        for i in range(30):
            client.set(f"key{i}", i)
        assert [int(client.get(f"key{i}")) for i in range(30)] == list(range(30))
        client.close()

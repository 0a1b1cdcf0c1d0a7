"""The test helpers start real servers: a single node with AOF, and a 3-master cluster."""

from __future__ import annotations

import time

import pytest
import redis
import redis.asyncio
import redis.cluster

from mvactors.testing import RedisCluster, RedisServer, redis_cluster, redis_server


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


def test_cluster_with_replicas_fails_over_to_a_replica_that_has_every_write() -> None:
    with RedisCluster(3, replicas=1, node_timeout_ms=1000) as cluster:
        primaries = cluster.primaries()
        assert len(primaries) == 3 and all(len(cluster.replicas_of(m)) == 1 for m in primaries)
        client = redis.cluster.RedisCluster.from_url(cluster.url.replace("redis+cluster://", "redis://"))
        victim = primaries[0]
        [heir] = cluster.replicas_of(victim)
        mine = [k for k in (f"key{i}" for i in range(200))
                if client.get_node_from_key(k).port == victim.port]
        direct = redis.Redis(port=victim.port)
        for i, key in enumerate(mine):
            direct.set(key, i)
        assert direct.wait(1, 5000) == 1  # this connection's writes reached the replica
        direct.close()
        victim.kill()
        deadline = time.monotonic() + 30
        while cluster.role(heir) != "master":
            assert time.monotonic() < deadline, "the replica was not promoted within 30 s"
            time.sleep(0.05)  # promotion is decided by gossip; there is nothing to wait on
        promoted = redis.Redis(port=heir.port)
        assert [int(promoted.get(k)) for k in mine] == list(range(len(mine)))
        promoted.close()
        client.close()


def test_servers_refuse_to_evict_unless_told_otherwise() -> None:
    with redis_server() as url:
        assert redis.Redis.from_url(url).config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    with redis_server(maxmemory="2mb", maxmemory_policy="allkeys-lru") as url:
        settings = redis.Redis.from_url(url).config_get("maxmemory*")
        assert settings["maxmemory-policy"] == "allkeys-lru" and settings["maxmemory"] == str(2 * 1024 * 1024)

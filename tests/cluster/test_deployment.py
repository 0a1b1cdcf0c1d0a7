"""Redis deployments mvactors refuses (evicting ones) and those it warns about (weak persistence)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
import redis.asyncio

import mvactors
from mvactors.cluster.deployment import EVERYSEC_LOSES, check_deployment
from mvactors.cluster.errors import EvictionPolicyRefused
from mvactors.testing import RedisCluster, RedisServer
from tests.cluster.cluster_hosts import IMPORTS

from .processes import worker

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-lru", "allkeys-random", "volatile-ttl"])
async def test_an_evicting_policy_is_refused_with_the_fix_in_the_message(policy: str) -> None:
    with RedisServer(maxmemory_policy=policy) as server:
        client = redis.asyncio.Redis.from_url(server.url)
        try:
            with pytest.raises(EvictionPolicyRefused) as caught:
                await check_deployment(client, warn_persistence=False)
        finally:
            await client.aclose()
    message = str(caught.value)
    assert f"maxmemory-policy {policy!r}" in message
    assert "CONFIG SET maxmemory-policy noeviction" in message and "redis.conf" in message
    assert caught.value.code == "MVA_EVICTION_POLICY"


async def test_noeviction_with_always_fsync_passes_without_a_warning(
        redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        with caplog.at_level(logging.WARNING, logger="mvactors.cluster"):
            [settings] = await check_deployment(client, warn_persistence=True)
    finally:
        await client.aclose()
    assert (settings.maxmemory_policy, settings.appendonly, settings.appendfsync) == ("noeviction", "yes", "always")
    assert caplog.records == []


async def test_weak_persistence_is_allowed_with_a_warning_saying_what_a_crash_loses(
        caplog: pytest.LogCaptureFixture) -> None:
    with RedisServer(extra=("--appendfsync", "everysec")) as server:
        client = redis.asyncio.Redis.from_url(server.url)
        try:
            with caplog.at_level(logging.WARNING, logger="mvactors.cluster"):
                await check_deployment(client, warn_persistence=True)
                await check_deployment(client, warn_persistence=False)
        finally:
            await client.aclose()
    [record] = caplog.records  # clients do not warn: only the worker's check does
    assert EVERYSEC_LOSES in record.getMessage()


async def test_a_disabled_config_command_is_a_warning_not_a_refusal(caplog: pytest.LogCaptureFixture) -> None:
    # Managed services rename CONFIG; then nothing can be verified, and the caller goes on.
    with RedisServer(maxmemory_policy="allkeys-lru", extra=("--rename-command", "CONFIG", '""')) as server:
        client = redis.asyncio.Redis.from_url(server.url)
        try:
            with caplog.at_level(logging.WARNING, logger="mvactors.cluster"):
                [settings] = await check_deployment(client, warn_persistence=True)
        finally:
            await client.aclose()
    assert settings.maxmemory_policy is None
    [record] = caplog.records
    assert "could not verify" in record.getMessage() and "noeviction" in record.getMessage()


async def test_every_master_of_a_cluster_is_checked() -> None:
    with RedisCluster(3) as cluster:
        last = cluster.nodes[-1]
        admin = redis.asyncio.Redis.from_url(last.url)
        client = redis.asyncio.cluster.RedisCluster.from_url(cluster.url.replace("+cluster", ""))
        try:
            assert len(await check_deployment(client, warn_persistence=False)) == 3
            await admin.config_set("maxmemory-policy", "allkeys-lfu")
            with pytest.raises(EvictionPolicyRefused) as caught:
                await check_deployment(client, warn_persistence=False)
        finally:
            await admin.aclose()
            await client.aclose()
    assert f":{last.port}" in caught.value.node and caught.value.policy == "allkeys-lfu"


# ---- wired into Worker, connect() and `mvactors worker` ----


@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-lru"])
async def test_the_worker_process_refuses_an_evicting_redis_with_exit_status_2(policy: str) -> None:
    with RedisServer(maxmemory_policy=policy) as server, worker(server.url) as proc:
        assert proc.wait(60) == 2
    out = proc.output()
    assert f"maxmemory-policy {policy!r}" in out and "CONFIG SET maxmemory-policy noeviction" in out, out
    assert "Traceback" not in out, out


@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-lru"])
async def test_worker_and_connect_refuse_an_evicting_redis(policy: str) -> None:
    with RedisServer(maxmemory_policy=policy) as server:
        with pytest.raises(EvictionPolicyRefused, match="noeviction"):
            async with mvactors.Worker(server.url, IMPORTS):
                pass
        with pytest.raises(EvictionPolicyRefused, match="noeviction"):
            async with mvactors.connect(server.url):
                pass


async def test_a_renamed_config_lets_worker_and_client_start_with_a_warning(
        caplog: pytest.LogCaptureFixture, snapshot: Callable[[str], bytes]) -> None:
    renamed = ("--rename-command", "CONFIG", "CONFIG-b7f1")
    with RedisServer(maxmemory_policy="allkeys-lru", extra=renamed) as server, \
            caplog.at_level(logging.WARNING, logger="mvactors.cluster"):
        async with mvactors.Worker(server.url, IMPORTS), mvactors.connect(server.url) as client:
            actor_id = await client.spawn(snapshot("cluster_actor"), imports="counter")
            assert await client.call(actor_id, 1, "a", 1, timeout=10) == 1
    warnings = [r.getMessage() for r in caplog.records if "could not verify" in r.getMessage()]
    assert len(warnings) == 2, warnings  # the worker's check and the client's


async def test_the_worker_warns_what_weak_persistence_loses_and_serves(
        caplog: pytest.LogCaptureFixture) -> None:
    with RedisServer(extra=("--appendfsync", "everysec")) as server, \
            caplog.at_level(logging.WARNING, logger="mvactors.cluster"):
        async with mvactors.Worker(server.url, IMPORTS), mvactors.connect(server.url):
            pass
    assert [r.getMessage() for r in caplog.records if EVERYSEC_LOSES in r.getMessage()] != []

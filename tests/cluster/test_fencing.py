"""The commit function itself refuses stale owners, whatever the worker believes."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio

from mvactors.cluster.store import ActorKeys, load_functions

pytestmark = pytest.mark.anyio


async def acquire(r: Any, keys: ActorKeys, worker: str, ttl: int = 10_000) -> list[Any]:
    return await r.fcall("mva_acquire", 6, keys.state, keys.lease, keys.journal, keys.work, keys.ready,  # type: ignore[no-any-return]
                         keys.record, keys.actor_id, worker, ttl)


async def commit(r: Any, keys: ActorKeys, worker: str, epoch: Any, prev: int, turns: int) -> str:
    result = await r.fcall("mva_commit", 7, keys.state, keys.lease, keys.mailbox, keys.journal, keys.work,
                           keys.ready, keys.record, keys.actor_id, worker, epoch, prev, turns, "0-0", b"rec", "0", "",
                           1, 0)
    return result[0].decode()


async def test_stale_epochs_lapsed_leases_and_repeats(redis_url: str) -> None:
    r = redis.asyncio.Redis.from_url(redis_url)
    await load_functions(r)
    keys = ActorKeys.of("a")
    await r.fcall("mva_spawn", 2, keys.state, keys.record, b"snap", "", b"")
    first = await acquire(r, keys, "w1", ttl=200)
    assert first[0] == b"OK" and first[1] == b"1"
    assert (await acquire(r, keys, "w2"))[0] == b"BUSY"
    assert await commit(r, keys, "w1", b"1", 0, 1) == "OK"
    assert await commit(r, keys, "w1", b"1", 0, 1) == "DUP"  # a retried commit is not applied twice
    await r.delete(keys.lease)  # the lease lapses (as after a SIGSTOP)
    assert await commit(r, keys, "w1", b"1", 1, 2) == "FENCED"
    second = await acquire(r, keys, "w2")
    assert second[1] == b"2"  # a new epoch for the new owner
    assert await commit(r, keys, "w1", b"1", 1, 2) == "FENCED"  # the old owner, even with a lease-shaped key
    assert await commit(r, keys, "w2", b"2", 0, 2) == "CONFLICT"  # built on a stale turn count
    assert await commit(r, keys, "w2", b"2", 1, 2) == "OK"
    assert int(await r.hget(keys.state, "turns")) == 2 and await r.get(keys.record) == b"rec"
    await r.aclose()

"""The commit function itself refuses stale owners, whatever the worker believes."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio

from mvactors.cluster.keys import ActorKeys
from mvactors.cluster.link import load_functions
from mvactors.cluster.wire import CommitEntry, commit_args

pytestmark = pytest.mark.anyio


async def acquire(r: Any, keys: ActorKeys, worker: str, ttl: int = 10_000) -> list[Any]:
    return await r.fcall("mva_acquire", 6, keys.state, keys.lease, keys.journal, keys.work, keys.ready,  # type: ignore[no-any-return]
                         keys.record, keys.actor_id, worker, ttl)


async def commit(r: Any, keys: ActorKeys, worker: str, epoch: Any, prev: int, turns: int) -> str:
    entry = CommitEntry(keys, epoch.decode(), prev, turns, "0-0", b"rec")
    result = await r.fcall("mva_commit", *commit_args(worker, [entry]))
    return str(result[0].decode().split()[0])


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
    assert int(await r.hget(keys.state, "t")) == 2 and await r.get(keys.record) == b"rec"
    # Group commit: two actors of one partition in one call, each with its own outcome.
    others = [k for k in (ActorKeys.of(f"b{i}") for i in range(200)) if k.tag == keys.tag][:2]
    for other in others:
        await r.fcall("mva_spawn", 2, other.state, other.record, b"snap", "", b"")
        await acquire(r, other, "w2")
    entries = [CommitEntry(other, "1", prev, prev + 1, "0-0", b"r") for other, prev in ((others[0], 0), (others[1], 5))]
    assert await r.fcall("mva_commit", *commit_args("w2", entries)) == [b"OK", b"CONFLICT 0"]
    await r.aclose()


async def test_a_release_with_nothing_new_still_stores_its_record(redis_url: str) -> None:
    """(The record evict() makes is garbage-collected; the last per-turn one may not be.)"""
    r = redis.asyncio.Redis.from_url(redis_url)
    await load_functions(r)
    keys = ActorKeys.of("quiet")
    await r.fcall("mva_spawn", 2, keys.state, keys.record, b"snap", "", b"")
    epoch = (await acquire(r, keys, "w1"))[1].decode()

    async def commit_record(worker: str, record: bytes, release: bool) -> Any:
        entry = CommitEntry(keys, epoch, 0, 1, "0-0", record, release=release)
        return (await r.fcall("mva_commit", *commit_args(worker, [entry])))[0]

    assert await commit_record("w1", b"turn-1", False) == b"OK"
    assert await commit_record("w1", b"retried", False) == b"DUP"  # a plain retry changes nothing
    assert await r.get(keys.record) == b"turn-1"
    assert await commit_record("w2", b"stranger", True) == b"DUP"  # nothing new, and not its lease: no write
    assert await r.get(keys.record) == b"turn-1" and await r.exists(keys.lease)
    assert await commit_record("w1", b"turn-1, collected", True) == b"DUP"
    assert await r.get(keys.record) == b"turn-1, collected" and not await r.exists(keys.lease)
    assert await commit_record("w1", b"again", True) == b"DUP"  # a retried release: the lease is gone
    assert await r.get(keys.record) == b"turn-1, collected"
    assert await r.hgetall(keys.state) == {b"e": b"1", b"t": b"1", b"p": b"0-0"}
    await r.aclose()

"""``Client.actors(limit=, after=)``: pages by cursor, in ID order, reading about a page per page."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import mvactors
from mvactors.cluster import inventory as inventory_module
from mvactors.cluster.keys import ActorKeys

pytestmark = pytest.mark.anyio


@pytest.fixture
def ops_snapshot(snapshot: Callable[[str], bytes]) -> bytes:
    return snapshot("ops_actor")


async def _page(client: mvactors.Client, **kwargs: Any) -> list[dict[str, Any]]:
    return [info async for info in client.actors(**kwargs)]


async def test_paging_by_cursor_lists_every_actor_once_in_id_order(redis_url: str, ops_snapshot: bytes) -> None:
    async with mvactors.connect(redis_url) as client:
        # 600 plain IDs spread over all 32 partitions, plus IDs whose UTF-8 bytes sort after ASCII's
        # and a counter group: pages of 37 cross every partition's boundary many times.
        ids = {f"a{n:03d}" for n in range(600)} | {"é1", "z", "\u00ff", "日本"}
        for actor_id in sorted(ids):
            await client.spawn(ops_snapshot, actor_id=actor_id)
        seen: list[str] = []
        after: str | None = None
        pages = 0
        while True:
            page = await _page(client, limit=37, after=after)
            assert len(page) <= 37
            if not page:
                break
            pages += 1
            seen += [row["id"] for row in page]
            if len(page) < 37:
                break
            after = page[-1]["id"]
        assert len(seen) == len(ids) and set(seen) == ids  # every actor, none twice
        assert seen == sorted(ids, key=lambda i: i.encode("utf-8"))  # the byte order Redis's lex ranges use
        assert pages == -(-len(ids) // 37)
        # The unbounded stream is the same order; after= an ID no longer stored still resumes there.
        assert [row["id"] for row in await _page(client)] == seen
        assert [row["id"] for row in await _page(client, after="a5995", limit=3)] == ["z", "é1", "\u00ff"]


async def test_limit_is_respected_with_filters_and_state_indexes(redis_url: str, ops_snapshot: bytes) -> None:
    async with mvactors.connect(redis_url) as client:
        plain = [await client.spawn(ops_snapshot, actor_id=f"p{n:03d}") for n in range(200)]
        counters = [await client.spawn(ops_snapshot, imports="counter", actor_id=f"c{n}") for n in range(5)]
        assert [r["id"] for r in await _page(client, limit=1)] == ["c0"]
        # A filter that rejects most rows still fills the page (the reads grow until it does).
        assert [r["id"] for r in await _page(client, imports="counter", limit=2, after="c0")] == counters[1:3]
        assert [r["id"] for r in await _page(client, state="idle", limit=3, after="p100")] == plain[101:104]
        assert await _page(client, state="failed", limit=5) == []
        # A limit above the count is the whole list.
        assert len(await _page(client, limit=10_000)) == 205


async def test_a_page_describes_about_a_page_not_thousands(redis_url: str, ops_snapshot: bytes,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    async with mvactors.connect(redis_url) as client:
        for n in range(600):
            await client.spawn(ops_snapshot, actor_id=f"q{n:03d}")
        described: list[int] = []
        real = inventory_module.inventory_args

        def counting(keys: list[ActorKeys]) -> list[Any]:
            described.append(len(keys))
            return real(keys)

        monkeypatch.setattr(inventory_module, "inventory_args", counting)
        assert len(await _page(client, limit=50)) == 50
        # Without a limit the first round described up to 8,192 (all 600 here) before the first row.
        assert sum(described) <= 51, described


@pytest.mark.parametrize(("kwargs", "named"), [
    ({"limit": 0}, "limit"), ({"limit": -5}, "limit"), ({"limit": True}, "limit"), ({"limit": 2.5}, "limit"),
    ({"limit": "50"}, "limit"), ({"after": 7}, "after"), ({"after": b"a1"}, "after"),
])
async def test_bad_page_arguments_raise_naming_the_argument(redis_url: str, kwargs: dict[str, Any],
                                                            named: str) -> None:
    async with mvactors.connect(redis_url) as client:
        with pytest.raises(ValueError, match=f"^{named} must be"):
            await _page(client, **kwargs)


async def test_counts_come_from_the_indexes(redis_url: str, ops_snapshot: bytes) -> None:
    async with mvactors.connect(redis_url) as client:
        assert await client.counts() == {"total": 0, "failed": 0, "paused": 0}
        for n in range(40):
            await client.spawn(ops_snapshot, imports="counter", actor_id=f"k{n}")
        for n in range(3):
            await client.pause(f"k{n}")
        assert await client.counts() == {"total": 40, "failed": 0, "paused": 3}
        await client.resume("k0")
        await client.delete("k1")
        assert await client.counts() == {"total": 39, "failed": 0, "paused": 1}
        # An actor in both indexes (as describe() sees it: failed) is counted once, as failed.
        keys = ActorKeys.of("k2")
        await client.redis.hset(keys.state, "x", "broken on purpose")
        await client.redis.zadd(keys.failed, {"k2": 0})
        assert (await client.describe("k2"))["state"] == "failed"
        assert await client.counts() == {"total": 39, "failed": 1, "paused": 0}


async def test_a_full_walk_reads_in_large_rounds(redis_url: str, ops_snapshot: bytes,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # 8 IDs per partition per read stand for 256: each round must take at least a read's worth, or a
    # walk of 100,000 would go a few actors per round trip once the partitions' buffers ran low.
    monkeypatch.setattr(inventory_module, "_PAGE", 8)
    monkeypatch.setattr(inventory_module, "_ROUND", 32 * 8)
    async with mvactors.connect(redis_url) as client:
        ids = [f"r{n:03d}" for n in range(600)]
        for actor_id in ids:
            await client.spawn(ops_snapshot, actor_id=actor_id)
        rounds: list[int] = []
        real = inventory_module.inventory_args
        monkeypatch.setattr(inventory_module, "inventory_args", lambda keys: rounds.append(len(keys)) or real(keys))
        pipelines = 0
        link = client.link
        run = link.pipeline_once

        async def counted(build: Any) -> list[Any]:
            nonlocal pipelines
            pipelines += 1
            return await run(build)

        monkeypatch.setattr(link, "pipeline_once", counted)
        assert [row["id"] async for row in client.actors()] == ids
        assert sum(rounds) == 600
        # 600 actors in rounds of at least 8: at most 75 rounds of two pipelines (IDs, describes).
        print("PIPELINES", pipelines, len(rounds))
        assert pipelines <= 2 * 75, pipelines


async def test_pages_and_counts_over_a_redis_cluster(ops_snapshot: bytes) -> None:
    from mvactors.testing import redis_cluster

    # 32 partitions over 3 masters: the ID reads, describes and ZINTERCARDs go to their own slots.
    with redis_cluster() as url:
        async with mvactors.connect(url) as client:
            ids = [f"k{n:03d}" for n in range(150)]
            for actor_id in ids:
                await client.spawn(ops_snapshot, actor_id=actor_id)
            await client.pause("k005")
            seen: list[str] = []
            after: str | None = None
            while True:
                page = [row["id"] for row in await _page(client, limit=40, after=after)]
                seen += page
                if len(page) < 40:
                    break
                after = page[-1]
            assert seen == ids
            assert await client.counts() == {"total": 150, "failed": 0, "paused": 1}
            assert [row["id"] for row in await _page(client, state="paused", limit=5)] == ["k005"]

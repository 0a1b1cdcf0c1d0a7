"""The dashboard over Redis, by plain HTTP: a real redis-server and the client's operations methods.

Where the client lacks an operations method (history, fork, reset...), the page must say "not
available" and still render, and the action is neither shown nor done.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import pytest

import mvactors
from mvactors.dashboard import create_app
from mvactors.dashboard.sources import RedisSource, display_url

from .support import GUEST, HOSTILE_ID, SCRIPT, client_for, csrf_of

pytestmark = pytest.mark.anyio


@pytest.fixture
def redis_url() -> Iterator[str]:
    from mvactors.testing import redis_server

    with redis_server() as url:
        yield url


async def test_pages_render_with_the_client_of_today_and_say_what_is_missing(redis_url: str, compile_js) -> None:  # type: ignore[no-untyped-def]
    snapshot = compile_js(GUEST)
    async with mvactors.connect(redis_url) as client:
        await client.spawn(snapshot, imports=SCRIPT, actor_id=HOSTILE_ID)
        await client.spawn(snapshot, actor_id="plain")
    app = create_app(redis_url=redis_url)
    async with client_for(app) as http:
        for path in ("/", "/actors", "/workers", "/actors?state=failed&imports=x&owner=y&code=z"):
            page = await http.get(path)
            assert page.status_code == 200, (path, page.text)
        # The inventory (client.actors()) lists them, and its filters narrow the table.
        listing = (await http.get("/actors")).text
        assert 'data-actor="plain"' in listing and "data-actor=\"&lt;script&gt;" in listing
        narrowed = (await http.get("/actors", params={"imports": SCRIPT})).text
        assert 'data-actor="plain"' not in narrowed and "data-actor=\"&lt;script&gt;" in narrowed
        assert 'data-actor=' not in (await http.get("/actors", params={"state": "failed"})).text
        hostile = await http.get("/actors/" + quote(HOSTILE_ID, safe=""))
        assert hostile.status_code == 200
        assert "<script>" not in hostile.text.split("<main>")[1]
        assert 'data-field="imports">&lt;script&gt;' in hostile.text
        found = await http.get("/actors", params={"q": "plain"})
        assert found.status_code == 303 and found.headers["location"] == "/actors/plain"
        assert (await http.get("/actors/ghost")).status_code == 404

        page = await http.get("/actors/plain")
        assert 'data-action="delete"' in page.text
        done = await http.post("/actors/plain", data={"action": "delete", "csrf": csrf_of(page.text)},
                               headers={"HX-Request": "true"})
        assert "deleted plain" in done.text
        gone = await http.post("/actors/plain", data={"action": "delete", "csrf": csrf_of(page.text)},
                               headers={"HX-Request": "true"})
        assert "no actor &#39;plain&#39;" in gone.text  # said, not a 500


async def test_actions_the_client_lacks_are_neither_shown_nor_done(redis_url: str) -> None:
    source = RedisSource(redis_url)
    try:
        offered = source.actions()
        assert "delete" in offered
        for action in ("pause", "resume", "retry", "cancel", "fork", "reset"):
            assert (action in offered) == hasattr(mvactors.cluster.Client, action)
        missing = [a for a in ("pause", "retry") if a not in offered]
        for action in missing:
            with pytest.raises(ValueError, match="operations API"):
                await source.act("x", action, {})
    finally:
        await source.aclose()


def test_the_header_never_shows_a_redis_password() -> None:
    assert display_url("redis://:hunter2@db.internal:6379/0") == "redis://db.internal:6379/0"
    assert display_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


async def test_a_search_that_walks_the_inventory_stops_at_its_budget_and_the_client_still_works(
        redis_url: str, compile_js, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import mvactors.dashboard.sources as sources

    snapshot = compile_js(GUEST)
    async with mvactors.connect(redis_url) as client:
        for i in range(300):
            await client.spawn(snapshot, actor_id=f"a{i:03d}")
    async with client_for(create_app(redis_url=redis_url)) as http:
        monkeypatch.setattr(sources, "SEARCH_BUDGET_S", 0.0)  # out of time at the first read
        cut = (await http.get("/actors", params={"owner": "nobody"})).text
        assert "the search stopped after 0 s" in cut and 'hx-trigger="every 2s"' not in cut
        monkeypatch.setattr(sources, "SEARCH_BUDGET_S", 5.0)
        # The cancelled read left the client's connections usable.
        for _ in range(3):
            listing = (await http.get("/actors")).text
            assert listing.count("data-actor=") == 50 and 'rel="next"' in listing
        assert "data-actor=" not in (await http.get("/actors", params={"owner": "nobody"})).text


async def test_the_overview_counts_by_state_from_the_indexes(redis_url: str, compile_js) -> None:  # type: ignore[no-untyped-def]
    import re

    snapshot = compile_js(GUEST)
    async with mvactors.connect(redis_url) as client:
        for i in range(30):
            await client.spawn(snapshot, actor_id=f"s{i:02d}")
        await client.pause("s00")
        await client.pause("s01")
    async with client_for(create_app(redis_url=redis_url)) as http:
        page = (await http.get("/")).text

    def tile(state: str) -> str:
        found = re.search(rf'data-state="{state}">\s*(?:{{%[^%]*%}}\s*)*<span class="count">([^<]*)</span>', page)
        assert found, (state, page)
        return found.group(1).strip()

    # Paused and failed are exact; no worker holds any, so running is 0 and idle the rest (both marked ≈).
    assert (tile("paused"), tile("failed"), tile("running"), tile("idle")) == ("2", "0", "≈0", "≈28")
    assert "30 actors; idle + running: 28 exactly" in page
    assert "would take a walk" not in page


async def test_paging_by_cursor_shows_every_actor_once(redis_url: str, compile_js) -> None:  # type: ignore[no-untyped-def]
    import html
    import re

    snapshot = compile_js(GUEST)
    async with mvactors.connect(redis_url) as client:
        for i in range(120):
            await client.spawn(snapshot, actor_id=f"g{i:03d}")
    seen: list[str] = []
    async with client_for(create_app(redis_url=redis_url)) as http:
        path: str | None = "/actors"
        while path is not None:
            page = (await http.get(path)).text
            seen += [html.unescape(i) for i in re.findall(r'data-actor="([^"]*)"', page)]
            link = re.search(r'<a href="([^"]*)" rel="next">', page)
            path = html.unescape(link.group(1)) if link else None
            if path is not None:
                assert f"cursor={seen[-1]}" in path  # the cursor is the last ID shown, not a row count
    assert seen == [f"g{i:03d}" for i in range(120)]  # 50 + 50 + 20, in ID order, none twice


async def test_more_failed_actors_than_shown_say_how_they_were_chosen(redis_url: str, compile_js) -> None:  # type: ignore[no-untyped-def]
    from mvactors.cluster.keys import ActorKeys

    snapshot = compile_js(GUEST)
    async with mvactors.connect(redis_url) as client:
        for i in range(12):
            actor_id = f"f{i:02d}"
            await client.spawn(snapshot, actor_id=actor_id)
            keys = ActorKeys.of(actor_id)  # failed as a worker's mva_fail leaves it: reason and index
            await client.redis.hset(keys.state, "x", f"reason {i}")
            await client.redis.zadd(keys.failed, {actor_id: 0})
    async with client_for(create_app(redis_url=redis_url)) as http:
        page = (await http.get("/")).text
    failures = page.split("Latest failures")[1]
    assert failures.count("/actors/f") == 10 and "reason 11" not in failures
    assert "the first 10 failed actors by ID" in failures and "12</span>" in page.split("Latest failures")[0]

"""The pages over a DataSource that has everything the operations API will give (history, workers,
every filter and action): what the Runtime and today's client cannot show yet must render, escaped."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from mvactors.dashboard import create_app
from mvactors.dashboard.sources import ACTIONS, FILTERS, ActorPage, Overview

from .support import HOSTILE_ID, HOSTILE_REASON, IMG, SCRIPT, client_for, csrf_of

pytestmark = pytest.mark.anyio


class Complete:
    """A DataSource answering with the operations API's shapes, hostile strings in every field."""

    label = f"complete {SCRIPT}"
    filters = frozenset(FILTERS)

    def __init__(self) -> None:
        self.done: list[tuple[str, str, dict[str, str]]] = []
        self.turns = 0

    def actions(self) -> frozenset[str]:
        return frozenset(ACTIONS)

    def info(self, actor_id: str, state: str = "failed") -> dict[str, Any]:
        return {"id": actor_id, "state": state, "owner": f"w-{SCRIPT}", "turns": 7, "mailbox": 2,
                "imports": IMG, "failed": HOSTILE_REASON, "epoch": 3, "code": "ab" * 16, "history": 5,
                "paused": {"reason": "operator", "since": 1.0, "detail": SCRIPT},
                "last_failure": {"message_id": IMG, "error": HOSTILE_REASON}}

    async def overview(self) -> Overview:
        self.turns += 100
        return Overview(counts={"idle": 5, "running": 1, "paused": 1001, "failed": 1}, turns=self.turns,
                        failures=[self.info(HOSTILE_ID)])

    async def actors(self, filters: Mapping[str, str], cursor: str | None, limit: int) -> ActorPage:
        rows = [self.info(HOSTILE_ID, filters.get("state") or "idle"), self.info("plain", "idle")]
        if filters.get("owner") == "rare":  # a walk of the whole inventory that ran out of time
            return ActorPage(rows[:1], partial=True)
        return ActorPage(rows[:limit], None if cursor else "after-plain")

    async def actor(self, actor_id: str) -> dict[str, Any] | None:
        return self.info(actor_id) if actor_id in (HOSTILE_ID, "plain") else None

    async def history(self, actor_id: str, limit: int) -> list[dict[str, Any]]:
        return [{"turn": 1, "at": 1.0, "kind": "message", "export": 1, "args": [SCRIPT], "message_id": IMG,
                 "result": IMG, "host_calls": [{"import": 2, "args": [SCRIPT], "result": IMG}]},
                {"turn": 2, "at": 2.0, "kind": "message", "export": 2, "args": [], "message_id": "m2",
                 "error": HOSTILE_REASON, "host_calls": []}]

    async def workers(self) -> list[dict[str, Any]]:
        return [{"id": f"w-{SCRIPT}", "host": IMG, "pid": 42, "actors": 2, "turns": self.turns, "started": 0.0,
                 "seen": 0.0}]

    async def act(self, actor_id: str, action: str, params: Mapping[str, str]) -> str:
        self.done.append((actor_id, action, dict(params)))
        return f"{action} {actor_id} done"

    async def aclose(self) -> None:
        return None


async def test_every_field_of_the_operations_api_renders_escaped() -> None:
    source = Complete()
    async with client_for(create_app(source=source)) as http:
        pages = {path: await http.get(path) for path in (
            "/", "/actors", "/actors?state=failed&imports=a&owner=b&code=c", "/actors/plain", "/workers")}
        for path, page in pages.items():
            assert page.status_code == 200, path
            assert "<script>" not in page.text.split("<body>")[1].replace('<script src="/static/htmx.min.js">', "")
            assert "<img src=x" not in page.text, path
        assert "1000+" in pages["/"].text and "Not available" not in pages["/"].text
        assert 'name="imports"' in pages["/actors"].text and 'name="code"' in pages["/actors"].text
        assert 'href="/actors?cursor=after-plain"' in pages["/actors"].text
        assert "cursor=after-plain" in pages["/actors?state=failed&imports=a&owner=b&code=c"].text
        actor = pages["/actors/plain"].text
        assert "error: reason &lt;script&gt;" in actor  # the history's failed turn
        assert all(f'data-action="{a}"' in actor for a in ACTIONS)
        workers = pages["/workers"].text
        assert "w-&lt;script&gt;" in workers and 'data-actor' not in workers

        assert 'href="/actors?owner=w-%3Cscript%3E' in workers  # each worker's actors: the table by owner
        partial = (await http.get("/actors", params={"owner": "rare"})).text
        assert "stopped after 1 s with 1 matches" in partial and "hx-trigger" not in partial.split('id="live"')[1]
        assert 'hx-trigger="every 2s"' in pages["/actors"].text

        token = csrf_of(actor)
        fork = await http.post("/actors/plain", data={"action": "fork", "turn": "1", "csrf": token},
                               headers={"HX-Request": "true"})
        assert fork.text.strip().endswith("fork plain done</p>")
        assert source.done == [("plain", "fork", {"action": "fork", "turn": "1", "csrf": token})]


class WithTimer(Complete):
    async def actor(self, actor_id: str) -> dict[str, Any] | None:
        import time

        info = await super().actor(actor_id)
        if info is not None:
            info["pending_calls"] = [{"import": 9, "args": [1000], "due": time.time() + 30},
                                     {"import": 4, "args": [], "due": None}]
        return info


async def test_a_timer_shows_when_it_is_due_and_an_empty_chart_says_why() -> None:
    async with client_for(create_app(source=WithTimer())) as http:
        actor = (await http.get("/actors/plain")).text
        # Relative to now, not a raw unix time such as 1796621415.9555628.
        due = actor.split("<th>due</th>")[1]
        assert "in 29." in due or "in 30.0 s" in due, due
        assert "— (a host call, no timer)" in due
        assert "179" not in due.split("</table>")[0]
        first = (await http.get("/")).text
        assert "the line starts at the next poll" in first  # one sample of the turn count: no rate yet

"""What the dashboard suites share: a guest with hostile strings, a Runtime populated with it, HTTP helpers."""

from __future__ import annotations

import re
from typing import Any

import anyio
import httpx

import mvactors

# Export 1 echoes, 2 throws its argument (a failure reason we choose), 3 spins (a gas pause), 4 counts.
GUEST = """
let n = 0;
vmExport(1, (x) => { n = n + 1; return x; });
vmExport(2, (why) => { throw why; });
vmExport(3, () => { let i = 0; while (i < 10000) i = i + 1; return i; });
vmExport(4, () => { n = n + 1; return n; });
"""
SCRIPT = "<script>window.__pwned = 1</script>"
IMG = '"><img src=x onerror="window.__pwned = 2">'
HOSTILE_ID = f"{SCRIPT}{IMG}"
HOSTILE_REASON = f"reason {SCRIPT} {IMG}"

ECHO, THROW, SPIN, COUNT = 1, 2, 3, 4


async def populate(rt: mvactors.Runtime, snapshot: bytes, plain: int = 3) -> dict[str, str]:
    """Actors in every state the Runtime has, with hostile IDs and reasons; returns role -> actor ID."""
    ids = {}
    for i in range(plain):
        actor = await rt.spawn(snapshot, actor_id=f"plain-{i}")
        await actor.call(COUNT)
        ids[f"plain-{i}"] = actor.id
    hostile = await rt.spawn(snapshot, actor_id=HOSTILE_ID)
    await hostile.call(ECHO, IMG)
    ids["hostile"] = hostile.id
    failing = await rt.spawn(snapshot, actor_id="unlucky")
    await failing.send(THROW, HOSTILE_REASON)  # nobody awaits it: shows as last_failure
    ids["unlucky"] = failing.id
    gassy = await rt.spawn(snapshot, actor_id="gassy", gas=mvactors.GasPolicy(per_turn=2_000))
    await gassy.send(SPIN)
    ids["gassy"] = gassy.id
    # Not rt.wait_idle(): other actors of the runtime (a fleet) may never be idle.
    with anyio.fail_after(10):
        while gassy.state != "paused" or failing.last_failure is None:
            await anyio.sleep(0.01)
    return ids


def csrf_of(html: str) -> str:
    """The CSRF token a page's forms carry."""
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def client_for(app: Any, **kwargs: Any) -> httpx.AsyncClient:
    """An HTTP client for the ASGI app in this event loop (Host 127.0.0.1, as a local browser sends)."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8000", **kwargs)

"""Helpers for the runtime tests: the rt_actor guest's export IDs, a controllable host, a manual clock."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel

import mvactors
from mvactors import VirtualClock

# Export IDs of tests/guest/rt_actor.js
HANDLE, GET_COUNT, INCREMENT, SPIN, GET_STATE, FETCH_ADD, FETCH_THEN_SPIN = 1, 2, 3, 4, 5, 6, 7
NAP, TICKER, RECEIVE, FAIL, FAIL_LATER, ALLOCATE, ECHO, FETCH_THEN_ALLOCATE = 8, 9, 10, 11, 12, 13, 14, 15
TICKER_SYNC = 16

# Import IDs of tests/guest/rt_actor.js
TRACE, FETCH, POST, SLEEP = 1, 2, 3, 9

TIMEOUT = 10


class Host:
    """The host side of rt_actor actors: a trace, gated fetches, posts between actors.

    Events are created lazily, inside the running event loop (trio needs that).
    """

    def __init__(self) -> None:
        self.trace: list[tuple[Any, ...]] = []
        self.fetches: list[Any] = []
        self.values: dict[Any, Any] = {}
        self.runtime: mvactors.Runtime | None = None
        self._gates: dict[Any, anyio.Event] = {}
        self._started: dict[Any, anyio.Event] = {}
        self._seen: dict[str, tuple[int, anyio.Event]] = {}

    def gate(self, key: Any) -> anyio.Event:
        """Make fetch(key) wait until the returned event is set."""
        event = self._gates[key] = anyio.Event()
        self._started[key] = anyio.Event()
        return event

    def started(self, key: Any) -> anyio.Event:
        """Set once fetch(key) has been called (for a gated key)."""
        return self._started[key]

    def seen(self, kind: str, count: int = 1) -> anyio.Event:
        """An event set once ``count`` trace entries of ``kind`` exist (from any actor)."""
        event = anyio.Event()
        self._seen[kind] = (count, event)
        self._check_seen(kind)
        return event

    def _check_seen(self, kind: str) -> None:
        entry = self._seen.get(kind)
        if entry is not None and sum(1 for t in self.trace if t[1] == kind) >= entry[0]:
            entry[1].set()
            del self._seen[kind]

    def imports(self, actor_id: str = "", **extra: Callable[..., Any]) -> dict[int, Callable[..., Any]]:
        def trace(kind: str, a: Any = None, b: Any = None) -> None:
            self.trace.append((actor_id, kind, a, b))
            self._check_seen(kind)

        async def fetch(key: Any) -> Any:
            self.fetches.append((actor_id, key))
            if key in self._gates:
                self._started[key].set()
                await self._gates[key].wait()
            else:
                await anyio.lowlevel.checkpoint()
            return self.values.get(key, 5)

        async def post(target: int, value: Any) -> None:
            assert self.runtime is not None
            await self.runtime.get(f"a{target}").send(RECEIVE, value)

        imports: dict[int, Callable[..., Any]] = {TRACE: trace, FETCH: fetch, POST: post,
                                                  SLEEP: mvactors.imports.sleep}
        imports.update({int(k.removeprefix("i")): v for k, v in extra.items()})
        return imports

    def kinds(self, kind: str, actor_id: str | None = None) -> list[tuple[Any, ...]]:
        return [t for t in self.trace if t[1] == kind and (actor_id is None or t[0] == actor_id)]


class ManualClock(VirtualClock):
    """A Clock whose time moves only when the test says so (no driver task)."""

    autojump = False

    def advance(self, seconds: float) -> None:
        self.advance_to(self.now() + seconds)


async def wait_until(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    """Yield to the event loop until ``predicate()`` holds (no wall-clock sleeping)."""
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.lowlevel.checkpoint()

"""The runtime's timers: one heap and one task for every actor's sleeps and gas refills."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio

from .clock import Clock

if TYPE_CHECKING:
    from .actor import Actor

REFILL = -1  # timer token: an actor's gas bucket is full again (async call tokens are >= 1)


class Timers:
    """Fires ``fire(actor, token)`` at each armed due time of the runtime clock.

    The one owner of timer bookkeeping: how many timers each actor has armed, and how
    many in the heap belong to actors forgotten since (they fire into nothing; removing
    them from the heap at eviction would cost O(n) each time).
    """

    def __init__(self, clock: Clock, fire: Callable[[Actor, int], None], after_firing: Callable[[], None]) -> None:
        self._clock = clock
        self._fire = fire
        self._after_firing = after_firing
        self._heap: list[tuple[float, int, Actor, int]] = []
        self._seq = itertools.count()
        self._scope: anyio.CancelScope | None = None
        self._wakeup: anyio.Event | None = None
        self._armed: dict[Actor, int] = {}  # actor -> its timers in the heap (no entry: none)
        self._dead = 0  # in the heap for actors forgotten since

    def __len__(self) -> int:
        """Timers that still matter."""
        return len(self._heap) - self._dead

    def arm(self, actor: Actor, token: int, due: float) -> None:
        armed = self._armed
        armed[actor] = armed.get(actor, 0) + 1
        heap = self._heap
        earliest = heap[0][0] if heap else None
        heapq.heappush(heap, (due, next(self._seq), actor, token))
        if earliest is None or due < earliest:
            if self._scope is not None:
                self._scope.cancel()
            if self._wakeup is not None:
                self._wakeup.set()

    def forget(self, actor: Actor) -> None:
        """``actor`` left the runtime: its armed timers no longer fire."""
        self._dead += self._armed.pop(actor, 0)

    async def run(self) -> None:
        heap = self._heap
        clock = self._clock
        armed = self._armed
        while True:
            if not heap:
                wakeup = self._wakeup = anyio.Event()
                await wakeup.wait()
                self._wakeup = None
                continue
            due = heap[0][0]
            with anyio.CancelScope() as scope:
                self._scope = scope
                await clock.sleep_until(due)
            self._scope = None
            now = clock.now()
            while heap and heap[0][0] <= now:
                _, _, actor, token = heapq.heappop(heap)
                left = armed.get(actor)
                if left is None:  # forgotten
                    self._dead -= 1
                    continue
                if left == 1:
                    del armed[actor]
                else:
                    armed[actor] = left - 1
                self._fire(actor, token)
            self._after_firing()

"""The runtime's scheduler: actors with mail wait in one ready queue and take turns, round-robin."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio

from ._checkpoint import Checkpoint
from .clock import Clock

if TYPE_CHECKING:
    from .actor import Actor

# Turns run back to back before the loop gets a turn (the inline call path counts the same way).
TURNS_BETWEEN_YIELDS = 64


class Scheduler:
    """The ready queue and the task that drains it (guest code is synchronous: a turn never yields)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.ready: deque[Actor] = deque()
        # The actors in ``ready``, by identity: added and removed together with it, never across an await.
        self._queued: set[Actor] = set()
        self._work: anyio.Event | None = None
        self._idle_scope: anyio.CancelScope | None = None  # the wait for the next idle deadline

    def schedule(self, actor: Actor) -> None:
        queued = self._queued
        if actor in queued:
            return
        cell = actor.cell
        if not cell.mailbox or cell.pause is not None or cell.failure is not None:
            return
        queued.add(actor)
        self.ready.append(actor)
        if self._work is not None:  # the task waits for work (not already running turns): wake it
            self.wake()

    def wake(self) -> None:
        """Let the scheduler task run its loop: new work, or idle-time duties (residency)."""
        work = self._work
        if work is not None:
            self._work = None
            work.set()
            if self._idle_scope is not None:
                self._idle_scope.cancel()

    async def run(self, turn: Callable[[Actor], None], between_turns: Callable[[], None],
                  when_idle: Callable[[], float | None], checkpoint: Checkpoint) -> None:
        """Run turns forever.  ``when_idle()`` does idle duties and returns when to look again (or None);
        ``checkpoint()`` lets the loop run others every TURNS_BETWEEN_YIELDS turns."""
        ready = self.ready
        queued = self._queued
        turns = 0
        while True:
            if not ready:
                deadline = when_idle()
                work = self._work = anyio.Event()
                if deadline is None:
                    await work.wait()
                else:
                    with anyio.CancelScope() as scope:
                        self._idle_scope = scope
                        await self._clock.sleep_until(deadline)
                    self._idle_scope = None
                continue
            actor = ready.popleft()
            queued.discard(actor)
            cell = actor.cell
            if not cell.mailbox or cell.pause is not None or cell.failure is not None:
                continue
            turn(actor)
            turns += 1
            if turns % TURNS_BETWEEN_YIELDS == 0:
                between_turns()
                await checkpoint()

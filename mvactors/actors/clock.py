"""Runtime clocks: wall time, or virtual time that jumps when everything is idle."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol

import anyio
import anyio.lowlevel
import sniffio


class Clock(Protocol):
    """Time source for timers (``mvactors.imports.sleep``) and idle policies."""

    def now(self) -> float:
        """Current time in seconds."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Return at or after ``deadline``."""
        ...


def to_wall_time(clock: Clock, t: float, wall_now: float) -> float:
    """Clock time ``t`` as wall time (seconds since the epoch), taking the clock's now to be ``wall_now``.

    Exact for WallClock (a monotonic clock runs at wall speed); a simulated
    clock keeps the time left until ``t``.
    """
    return wall_now + (t - clock.now())


def from_wall_time(clock: Clock, wall: float, written_at: float) -> float:
    """When wall time ``wall``, in a record made at wall time ``written_at``, comes on ``clock``.

    On the wall clock that is the absolute moment, so a takeover fires a timer
    at its original due time; a simulated clock resumes the time left when the
    record was written, whatever real time passed since.
    """
    if isinstance(clock, WallClock):
        return clock.now() + (wall - time.time())
    return clock.now() + (wall - written_at)


class WallClock:
    """The event loop's monotonic clock."""

    def now(self) -> float:
        return anyio.current_time()

    async def sleep_until(self, deadline: float) -> None:
        await anyio.sleep_until(deadline)


class VirtualClock:
    """Simulated time for deterministic runs.

    Time stands still while anything can make progress; when every task in
    the event loop is blocked, it jumps to the earliest pending deadline.  The
    same inputs therefore give the same trace, however fast the machine is.
    Run :meth:`drive` in the task group that hosts the simulation (a Runtime
    does, when ``autojump`` is true).
    """

    autojump = True  # a Runtime runs drive(); a subclass may move time itself instead

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._waiters: list[tuple[float, int, anyio.Event]] = []
        self._seq = itertools.count()
        self._sleeper_added: anyio.Event | None = None

    def now(self) -> float:
        return self._now

    async def sleep_until(self, deadline: float) -> None:
        if deadline <= self._now:
            await anyio.lowlevel.checkpoint()
            return
        event = anyio.Event()
        entry = (deadline, next(self._seq), event)
        heapq.heappush(self._waiters, entry)
        if self._sleeper_added is not None:
            self._sleeper_added.set()
        try:
            await event.wait()
        finally:
            if not event.is_set():
                # Cancelled: a stale deadline would make time jump to a moment nobody waits for.
                self._waiters.remove(entry)
                heapq.heapify(self._waiters)

    def advance_to(self, deadline: float) -> None:
        """Move time forward to ``deadline``, waking every sleeper due by then."""
        if deadline < self._now:
            raise ValueError(f"virtual time cannot go backwards ({deadline} < {self._now})")
        self._now = deadline
        while self._waiters and self._waiters[0][0] <= deadline:
            heapq.heappop(self._waiters)[2].set()

    @property
    def next_deadline(self) -> float | None:
        return self._waiters[0][0] if self._waiters else None

    async def drive(self) -> None:
        """Jump to the next deadline whenever all tasks are blocked (runs forever)."""
        while True:
            if not self._waiters:
                # Nothing to jump to: block until someone sleeps, without spinning.
                self._sleeper_added = anyio.Event()
                await self._sleeper_added.wait()
                self._sleeper_added = None
                continue
            await _all_tasks_blocked()
            deadline = self.next_deadline
            if deadline is not None:
                self.advance_to(deadline)


async def _all_tasks_blocked() -> None:
    """Return when every other task in the event loop is waiting on something.

    trio answers this exactly (anyio delegates to it).  anyio's asyncio version
    sleeps 0.1 s of wall time whenever a task is runnable, which would make
    simulated time crawl; here we yield one loop iteration at a time instead.
    """
    if sniffio.current_async_library() != "asyncio":
        await anyio.wait_all_tasks_blocked()
        return
    this_task = asyncio.current_task()
    while True:
        await anyio.lowlevel.checkpoint()
        for task in asyncio.all_tasks():
            if task is this_task:
                continue
            waiter = getattr(task, "_fut_waiter", None)
            if waiter is None or waiter.done():
                break
        else:
            return

"""``RuntimeServices``: what a Runtime promises the Actor handles it made and its HostCalls.

This is the whole of what :class:`Actor` and :class:`HostCalls` may ask of the runtime that
hosts them: schedule a turn, run one in the caller's task, hibernate an actor, start a task,
arm a timer, run an async host call.  The runtime's own machinery behind it (scheduler,
residency, timers) stays private to the runtime, so a HostCalls subclass (the cluster's
journal) depends on this interface and nothing else.  Every method is synchronous and
never runs guest code except :meth:`run_inline`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from ..imports import AsyncCall
from .clock import Clock

if TYPE_CHECKING:
    from .actor import Actor
    from .runtime import Runtime

HostTask = Callable[["Actor", AsyncCall], Awaitable[tuple[bool, Any]]]


class RuntimeServices(Protocol):
    """The runtime as its actors and its HostCalls see it (internal; one per Runtime)."""

    @property
    def runtime(self) -> Runtime:
        """The public Runtime these services belong to."""
        ...

    @property
    def clock(self) -> Clock:
        """The runtime's clock (timeouts and sleeps are on it)."""
        ...

    @property
    def running(self) -> bool:
        """Inside the runtime's ``async with``: turns and tasks can run."""
        ...

    def schedule(self, actor: Actor) -> None:
        """``actor``'s mailbox may have a message that can run: queue a turn (idempotent; no-op if
        it is empty, paused or failed)."""
        ...

    def can_run_inline(self, actor: Actor) -> bool:
        """Whether a call to ``actor`` may run its turn in the caller's task right now, with the
        same order and fairness as going through the scheduler (nothing else is ready, and
        ``actor`` is idle with an empty mailbox)."""
        ...

    def run_inline(self, actor: Actor) -> bool:
        """Run the turn of the message just put in ``actor``'s empty mailbox, here and now
        (only after :meth:`can_run_inline` said so, with nothing awaited in between).
        True when the caller should now let other tasks run (:meth:`checkpoint`)."""
        ...

    def checkpoint(self) -> Awaitable[None]:
        """A cancellation point that lets other tasks run: ``anyio.lowlevel.checkpoint`` without its
        per-call backend lookup (the runtime's loop cannot change while it runs)."""
        ...

    def hibernate(self, actor: Actor) -> bool:
        """Hibernate ``actor`` now if it can be (False if not: running, failed, not snapshottable)."""
        ...

    def start_soon(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        """Run ``fn(*args)`` as a task of the runtime (RuntimeNotRunning outside ``async with``)."""
        ...

    def arm_timer(self, actor: Actor, token: int, due: float) -> None:
        """Deliver the completion of sleep ``token`` to ``actor`` at ``due`` on the runtime's clock."""
        ...

    def start_host_task(self, run: HostTask, actor: Actor, call: AsyncCall) -> None:
        """Run ``run(actor, call)`` as a task and deliver its ``(ok, value)`` to ``actor``; the runtime
        counts it in flight until then (``wait_idle`` waits for it)."""
        ...

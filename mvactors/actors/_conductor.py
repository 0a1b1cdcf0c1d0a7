"""``Conductor``: one Runtime's turns, async host calls and timers (its :class:`RuntimeServices`)."""

from __future__ import annotations

import inspect
from collections import deque
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import anyio.lowlevel

from ..errors import RuntimeNotRunning
from ..imports import AsyncCall
from ._checkpoint import Checkpoint, checkpoint_for_running_loop
from ._residency import Residency
from ._scheduler import TURNS_BETWEEN_YIELDS, Scheduler
from ._timers import REFILL, Timers
from ._turns import TurnOutcome
from .clock import Clock
from .effects import HostCalls
from .gas import PauseEvent
from .metrics import ActorMetrics
from .services import HostTask

if TYPE_CHECKING:
    from .actor import Actor
    from .runtime import Runtime

TurnHook = Callable[["Actor", TurnOutcome], None]
ErrorHook = Callable[["Actor", BaseException], Any]
PauseHook = Callable[["Actor", PauseEvent], Any]


class Conductor:
    """Runs the turns of one runtime's actors and acts on their outcomes; implements RuntimeServices.

    The Runtime is the facade (actors by ID, spawn/adopt/evict, stats); this is the machinery a
    turn goes through, with the runtime's hooks as plain attributes so the per-turn path reads
    them without a hop.
    """

    def __init__(self, runtime: Runtime, clock: Clock, residency: Residency, host_calls: HostCalls,
                 on_turn: TurnHook | None, on_error: ErrorHook | None, on_pause: PauseHook | None) -> None:
        self.runtime = runtime
        self.clock = clock
        self.residency = residency
        self.host_calls = host_calls
        self.on_turn = on_turn
        self.on_error = on_error
        self.on_pause = on_pause
        self.scheduler = Scheduler(clock)
        # RuntimeServices.schedule, bound straight to the scheduler's: every send() calls it, and a
        # forwarding method would cost one more call (~0.1 us on a ~6.5 us pipelined turn).
        self.schedule: Callable[[Actor], None] = self.scheduler.schedule
        self.timers = Timers(clock, self._fire_timer, self.check_idle)
        self.tg: anyio.abc.TaskGroup | None = None
        self.in_flight = 0  # async host calls running as tasks
        self.latencies: deque[float] = deque(maxlen=8192)
        self.totals = ActorMetrics()
        self.unawaited_failures = 0
        self._idle_waiters: list[anyio.Event] = []
        self.checkpoint: Checkpoint = anyio.lowlevel.checkpoint
        self.inline_turns = 0

    # ---- lifecycle ----

    @property
    def running(self) -> bool:
        return self.tg is not None

    def start(self, tg: anyio.abc.TaskGroup) -> None:
        """Run the scheduler and the timers as tasks of ``tg`` (the runtime's)."""
        self.tg = tg
        self.checkpoint = checkpoint_for_running_loop()
        tg.start_soon(self.scheduler.run, self.turn, self.residency.enforce, self._when_idle, self.checkpoint)
        tg.start_soon(self.timers.run)

    def stop(self) -> None:
        """The runtime's task group is gone: no more turns inline, no more tasks."""
        self.tg = None

    def task_group(self) -> anyio.abc.TaskGroup:
        if self.tg is None:
            raise RuntimeNotRunning("the runtime is not running; use `async with Runtime() as rt:`")
        return self.tg

    def start_soon(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        self.task_group().start_soon(fn, *args)

    # ---- turns ----

    def can_run_inline(self, actor: Actor) -> bool:
        # Order and fairness are the same as going through the scheduler, minus two task
        # switches and an event: nothing else is ready, and this actor is idle with no mail.
        # (An empty ready queue means no actor is queued either: the scheduler keeps the two together.)
        cell = actor.cell
        return (not self.scheduler.ready and self.tg is not None and not cell.mailbox
                and cell.pause is None and cell.failure is None and not cell.running and not cell.evicted)

    def run_inline(self, actor: Actor) -> bool:
        self.turn(actor)
        if self.residency.limited:
            self.scheduler.wake()  # it enforces residency when idle, off the caller's path
        # A yield per call would be a loop iteration per call (~40% of an inline call); every 64th
        # bounds what a caller looping over calls holds the loop for, as the scheduler does.
        self.inline_turns += 1
        return self.inline_turns % TURNS_BETWEEN_YIELDS == 0

    def turn(self, actor: Actor) -> None:
        """Run one turn of ``actor`` (synchronously) and act on its outcome."""
        cell = actor.cell
        metrics = cell.metrics
        turns, gas_used, failed_turns = metrics.turns, metrics.gas_used, metrics.failed_turns
        try:
            outcome = cell.run_turn()
        except Exception as exc:  # a host-side failure outside the guest call: that actor only
            outcome = cell.fail(exc)
        totals = self.totals
        if metrics.turns != turns:
            totals.turns += metrics.turns - turns
            self.latencies.append(metrics.last_latency)
        totals.gas_used += metrics.gas_used - gas_used
        totals.failed_turns += metrics.failed_turns - failed_turns
        if outcome.error is not None:
            self.unawaited_failures += 1
        problem = outcome.error or outcome.failure
        if problem is not None and self.on_error is not None:
            self.start_soon(_run_hook, self.on_error, actor, problem)
        residency = self.residency
        if outcome.failure is not None:
            residency.removed(actor)
        elif outcome.woke:
            residency.added(actor)
        for call in outcome.calls:
            self.host_calls.start(actor, call)
        if outcome.pause is not None:
            self._paused(actor, outcome)
        if residency.max_resident is not None or residency.hibernate_after is not None:
            residency.touched(actor)
        if self.on_turn is not None and outcome.pause is None:
            self.on_turn(actor, outcome)
        self.schedule(actor)

    def _paused(self, actor: Actor, outcome: TurnOutcome) -> None:
        self.totals.pauses += 1
        if outcome.refill_at is not None:
            # Wake it when its bucket is full again (a timer, so virtual time jumps there).
            self.timers.arm(actor, REFILL, outcome.refill_at)
        if self.on_pause is not None and outcome.pause is not None:
            # Run as a task, not inside the turn: the hook may be async (e.g. await actor.resume()),
            # and an exception in it is the host's bug, which surfaces from the runtime.
            self.start_soon(_run_hook, self.on_pause, actor, outcome.pause)

    def _when_idle(self) -> float | None:
        """The scheduler ran out of work: residency duties, idle waiters; when to look again."""
        self.residency.enforce()
        self.check_idle()
        return self.residency.next_idle_deadline()

    def hibernate(self, actor: Actor) -> bool:
        return self.residency.hibernate(actor)

    # ---- idleness ----

    def is_idle(self) -> bool:
        return not self.scheduler.ready and not self.in_flight and not len(self.timers)

    def check_idle(self) -> None:
        if self._idle_waiters and self.is_idle():
            waiters, self._idle_waiters = self._idle_waiters, []
            for event in waiters:
                event.set()

    async def wait_idle(self) -> None:
        if self.is_idle():
            await self.checkpoint()
            return
        event = anyio.Event()
        self._idle_waiters.append(event)
        await event.wait()

    # ---- async host calls and timers (HostCalls.start uses these) ----

    def start_host_task(self, run: HostTask, actor: Actor, call: AsyncCall) -> None:
        self.in_flight += 1
        self.start_soon(self._host_task, run, actor, call)

    async def _host_task(self, run: HostTask, actor: Actor, call: AsyncCall) -> None:
        try:
            ok, value = await run(actor, call)
        finally:
            self.in_flight -= 1
        actor.deliver(call.token, ok, value)
        self.check_idle()

    def arm_timer(self, actor: Actor, token: int, due: float) -> None:
        self.timers.arm(actor, token, due)

    def _fire_timer(self, actor: Actor, token: int) -> None:
        cell = actor.cell
        if cell.refilled() if token == REFILL else cell.deliver(token, True, None):
            self.scheduler.schedule(actor)

    def forget(self, actor: Actor) -> None:
        """``actor`` left the runtime (evicted): it is no longer resident, and its timers fire into nothing."""
        self.residency.removed(actor)
        self.timers.forget(actor)
        self.check_idle()


async def _run_hook(hook: Callable[[Actor, Any], Any], actor: Actor, event: Any) -> None:
    result = hook(actor, event)
    if inspect.isawaitable(result):
        await result

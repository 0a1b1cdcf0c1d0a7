"""``Runtime``: many actors in one event loop (anyio: asyncio or trio).

One scheduler task runs turns for actors with mail, round-robin; guest code
is synchronous, so a turn never yields and turns of one actor never overlap.
Asynchronous host calls run as tasks in the runtime's task group and come
back as completion messages.  Actors hibernate to bytes (the least recently
active beyond ``max_resident``, or after ``hibernate_after`` idle seconds of
the runtime's clock) and wake on their next message.
"""

from __future__ import annotations

import heapq
import inspect
import itertools
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from typing import Any, Literal

import anyio
import anyio.abc
import anyio.lowlevel

from ..errors import MicroviumError
from ..imports import RuntimeImport
from ..store.base import CheckpointStore
from ..vm import VM, SnapshotLike, run_async_import
from .actor import Actor, ActorMetrics, GasPolicy, PauseEvent, decode_record, encode_record, percentile
from .clock import Clock, VirtualClock, WallClock

_TURNS_BETWEEN_YIELDS = 64
_REFILL = -1  # timer token: an actor's gas bucket is full again (async call tokens are >= 1)


class Runtime:
    """Hosts actors in an anyio task group.

    ``clock`` is ``"wall"`` (default), ``"virtual"`` (deterministic simulated
    time that jumps to the next timer when every task is blocked) or a Clock.
    ``max_resident`` caps live VMs: when a VM wakes beyond it, the least
    recently active other actors hibernate at once (also with queued mail or a
    paused turn; never the one running).  ``hibernate_after`` hibernates
    actors idle that many seconds of the runtime's clock.
    ``store`` is a CheckpointStore for :meth:`Actor.checkpoint` / :meth:`restore`.
    ``on_pause(actor, event)`` is called (as a task; it may be async) when an actor runs out of gas.
    """

    def __init__(
        self,
        clock: Literal["wall", "virtual"] | Clock = "wall",
        max_resident: int | None = None,
        store: CheckpointStore | None = None,
        *,
        hibernate_after: float | None = None,
        mailbox_size: int | None = None,
        overflow: Literal["wait", "raise"] = "wait",
        on_pause: Callable[[Actor, PauseEvent], Any] | None = None,
    ) -> None:
        if clock == "wall":
            self.clock: Clock = WallClock()
        elif clock == "virtual":
            self.clock = VirtualClock()
        elif isinstance(clock, str):
            raise ValueError(f"clock must be 'wall', 'virtual' or a Clock, not {clock!r}")
        else:
            self.clock = clock
        if max_resident is not None and max_resident < 0:
            raise ValueError("max_resident must be >= 0")
        if overflow not in ("wait", "raise"):
            raise ValueError(f"overflow must be 'wait' or 'raise', not {overflow!r}")
        self.max_resident = max_resident
        self.hibernate_after = hibernate_after
        self.store = store
        self.mailbox_size = mailbox_size
        self.overflow: Literal["wait", "raise"] = overflow
        self.on_pause = on_pause
        self._actors: dict[str, Actor] = {}
        self._resident: OrderedDict[str, Actor] = OrderedDict()  # LRU order: oldest first
        self._ready: deque[Actor] = deque()
        self._work: anyio.Event | None = None
        self._idle_scope: anyio.CancelScope | None = None  # the scheduler's wait for the next idle deadline
        self._timers: list[tuple[float, int, Actor, int]] = []
        self._timer_seq = itertools.count()
        self._timer_scope: anyio.CancelScope | None = None
        self._timer_wakeup: anyio.Event | None = None
        self._ids = itertools.count(1)
        self._tg: anyio.abc.TaskGroup | None = None
        self._in_flight = 0
        self._idle_waiters: list[anyio.Event] = []
        self._latencies: deque[float] = deque(maxlen=8192)
        self._totals = ActorMetrics()
        self._started = 0.0

    # ---- lifecycle ----

    async def __aenter__(self) -> Runtime:
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        self._started = time.perf_counter()
        tg.start_soon(self._run_scheduler)
        tg.start_soon(self._run_timers)
        if isinstance(self.clock, VirtualClock) and self.clock.autojump:
            tg.start_soon(self.clock.drive)
        return self

    async def __aexit__(self, *exc: Any) -> bool | None:
        tg = self._tg
        assert tg is not None
        tg.cancel_scope.cancel()
        try:
            return await tg.__aexit__(*exc)
        except BaseExceptionGroup as group:
            # A single failure (usually the body's own) comes out as itself, as from plain code.
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise
        finally:
            self._tg = None
            for actor in self._actors.values():
                actor._runtime_stopped()
                if actor._vm is not None:
                    actor._vm.close()
                    actor._vm = None

    def _task_group(self) -> anyio.abc.TaskGroup:
        if self._tg is None:
            raise MicroviumError("the runtime is not running; use `async with Runtime() as rt:`",
                                 "MVM_E_REQUIRES_ACTIVE_VM")
        return self._tg

    # ---- actors ----

    async def spawn(
        self,
        snapshot: SnapshotLike,
        imports: Mapping[int, Callable[..., Any]] | None = None,
        actor_id: str | None = None,
        gas: GasPolicy | None = None,
        *,
        mailbox_size: int | None = None,
        overflow: Literal["wait", "raise"] | None = None,
    ) -> Actor:
        """Restore ``snapshot`` as a new actor (no guest code runs until its first message)."""
        self._task_group()
        actor_id = self._new_id(actor_id)
        actor = Actor(self, actor_id, imports or {}, gas or GasPolicy(),
                      mailbox_size if mailbox_size is not None else self.mailbox_size, overflow or self.overflow)
        actor._attach(VM.restore(snapshot, actor._vm_imports))
        self._actors[actor_id] = actor
        self._resident_added(actor)
        self._enforce_residency()
        await anyio.lowlevel.checkpoint()
        return actor

    async def restore(
        self,
        actor_id: str,
        imports: Mapping[int, Callable[..., Any]] | None = None,
        gas: GasPolicy | None = None,
    ) -> Actor:
        """Bring back an actor from the store by ID, re-issuing the async host calls it was awaiting.

        Pending host calls are run again (at-least-once); pending sleeps keep
        their remaining time.
        """
        self._task_group()
        if self.store is None:
            raise MicroviumError("the runtime has no store; pass store= to Runtime", "MVM_E_INVALID_ARGUMENTS")
        if actor_id in self._actors:
            raise MicroviumError(f"actor {actor_id!r} is already running here", "MVM_E_INVALID_ARGUMENTS")
        record = await self.store.load(actor_id)
        if record is None:
            raise KeyError(f"no checkpoint for actor {actor_id!r} in the store")
        if actor_id in self._actors:  # restored concurrently while the store was loading
            raise MicroviumError(f"actor {actor_id!r} is already running here", "MVM_E_INVALID_ARGUMENTS")
        _, meta = decode_record(record)
        imports = dict(imports or {})
        for pending in meta["pending"].values():
            if pending.due is None and pending.import_id not in imports:
                raise MicroviumError(f"actor {actor_id!r} awaits host function {pending.import_id}, "
                                     "which is not in the import map", "MVM_E_UNRESOLVED_IMPORT")
        actor = Actor(self, actor_id, imports, gas or GasPolicy(), self.mailbox_size, self.overflow)
        actor._record = record
        actor.quota_left = meta["quota_left"] if actor.gas.quota is not None else None
        self._actors[actor_id] = actor
        try:
            actor._ensure_vm()
        except BaseException:
            del self._actors[actor_id]
            self._resident.pop(actor_id, None)
            raise
        # Calls awaited in the checkpointed process have no caller here.
        actor._promises.clear()
        now = self.clock.now()
        for token, pending in meta["pending"].items():
            actor._pending_async[token] = pending
            if pending.due is not None:
                pending.due = now + pending.due
                self._add_timer(actor, token, pending.due)
            else:
                fn = actor._imports[pending.import_id]
                self._start_host_call(actor, token, getattr(fn, "fn", fn), pending.args)
        await anyio.lowlevel.checkpoint()
        return actor

    def get(self, actor_id: str) -> Actor:
        """The actor with this ID (KeyError if none)."""
        try:
            return self._actors[actor_id]
        except KeyError:
            raise KeyError(f"no actor {actor_id!r} in this runtime") from None

    def __contains__(self, actor_id: object) -> bool:
        return actor_id in self._actors

    def __len__(self) -> int:
        return len(self._actors)

    @property
    def actors(self) -> list[Actor]:
        return list(self._actors.values())

    @property
    def resident_count(self) -> int:
        """Actors whose VM is live (not hibernated)."""
        return len(self._resident)

    async def sleep(self, seconds: float) -> None:
        """Sleep on the runtime's clock (virtual time in simulations)."""
        await self.clock.sleep_until(self.clock.now() + seconds)

    async def wait_idle(self) -> None:
        """Return once no actor has mail, no async host call is running and no timer is pending."""
        if self._is_idle():
            await anyio.lowlevel.checkpoint()
            return
        event = anyio.Event()
        self._idle_waiters.append(event)
        await event.wait()

    def _is_idle(self) -> bool:
        return not self._ready and not self._in_flight and not self._timers

    def _check_idle(self) -> None:
        if self._idle_waiters and self._is_idle():
            waiters, self._idle_waiters = self._idle_waiters, []
            for event in waiters:
                event.set()

    def stats(self) -> dict[str, Any]:
        """Counters across all actors."""
        totals = self._totals
        lat = sorted(self._latencies)
        elapsed = time.perf_counter() - self._started if self._started else 0.0
        return {
            "actors": len(self._actors),
            "resident": len(self._resident),
            "hibernated": sum(1 for a in self._actors.values() if a._vm is None and a.failure is None),
            "paused": sum(1 for a in self._actors.values() if a.pause is not None),
            "failed": sum(1 for a in self._actors.values() if a.failure is not None),
            "turns": totals.turns,
            "turns_per_second": totals.turns / elapsed if elapsed else 0.0,
            "pauses": totals.pauses,
            "gas_used": totals.gas_used,
            "hibernations": sum(a.metrics.hibernations for a in self._actors.values()),
            "rehydrations": sum(a.metrics.rehydrations for a in self._actors.values()),
            "mailbox_depth": sum(len(a.mailbox) for a in self._actors.values()),
            "host_calls_in_flight": self._in_flight,
            "timers": len(self._timers),
            "turn_latency_p50_us": percentile(lat, 50) * 1e6,
            "turn_latency_p99_us": percentile(lat, 99) * 1e6,
        }

    def _new_id(self, actor_id: str | None) -> str:
        if actor_id is None:
            actor_id = f"actor-{next(self._ids)}"
            while actor_id in self._actors:
                actor_id = f"actor-{next(self._ids)}"
        elif not isinstance(actor_id, str) or not actor_id:
            raise TypeError(f"actor IDs are non-empty str, not {actor_id!r}")
        elif actor_id in self._actors:
            raise MicroviumError(f"an actor with ID {actor_id!r} already exists", "MVM_E_INVALID_ARGUMENTS")
        return actor_id

    # ---- scheduling ----

    def _schedule(self, actor: Actor) -> None:
        if actor.scheduled or not actor.mailbox or actor.pause is not None or actor.failure is not None:
            return
        actor.scheduled = True
        self._ready.append(actor)
        self._wake_scheduler()

    def _wake_scheduler(self) -> None:
        """Let the scheduler task run its loop: new work, or idle-time duties (residency)."""
        work = self._work
        if work is not None:
            self._work = None
            work.set()
            if self._idle_scope is not None:
                self._idle_scope.cancel()

    async def _run_scheduler(self) -> None:
        ready = self._ready
        turns = 0
        while True:
            if not ready:
                self._enforce_residency()
                self._check_idle()
                work = self._work = anyio.Event()
                deadline = self._next_idle_deadline()
                if deadline is None:
                    await work.wait()
                else:
                    # Wake for new mail or when the least recently active actor has idled long enough.
                    with anyio.CancelScope() as scope:
                        self._idle_scope = scope
                        await self.clock.sleep_until(deadline)
                    self._idle_scope = None
                continue
            actor = ready.popleft()
            actor.scheduled = False
            if not actor.mailbox or actor.pause is not None or actor.failure is not None:
                continue
            self._turn(actor)
            turns += 1
            if turns % _TURNS_BETWEEN_YIELDS == 0:
                self._enforce_residency()
                await anyio.lowlevel.checkpoint()

    def _turn(self, actor: Actor) -> None:
        """Run one turn of ``actor`` (synchronously) and do the runtime's bookkeeping."""
        before = actor.metrics.turns, actor.metrics.gas_used
        try:
            actor.run_turn()
        except Exception as exc:  # a host-side failure outside the guest call: that actor only
            actor._running = False
            actor._fail_actor(exc)
        metrics = actor.metrics
        self._totals.turns += metrics.turns - before[0]
        self._totals.gas_used += metrics.gas_used - before[1]
        if metrics.turns != before[0]:
            self._latencies.append(metrics.last_latency)
        if (self.max_resident is not None or self.hibernate_after is not None) and actor._vm is not None \
                and actor.id in self._resident:
            # Recency only matters to the residency policy; reading the clock per turn is not free.
            actor.last_active = self.clock.now()
            self._resident.move_to_end(actor.id)
        self._schedule(actor)

    def _can_run_inline(self, actor: Actor) -> bool:
        """Whether a call can run its turn in the caller's task right away.

        Only when nothing else is waiting to run (no ready actors) and this
        actor is idle with an empty mailbox: order and fairness are the same as
        going through the scheduler, minus two task switches and an event.
        """
        return (not self._ready and self._tg is not None and not actor.mailbox and not actor.scheduled
                and actor.pause is None and actor.failure is None and not actor._running)

    def _on_pause(self, actor: Actor) -> None:
        self._totals.pauses += 1
        event, policy = actor.pause, actor.gas
        if (event is not None and event.reason == "quota" and policy.refill_per_second
                and policy.quota is not None and actor.quota_left is not None):
            # Wake it when its bucket is full again (a timer, so virtual time jumps there).
            wait = (policy.quota - actor.quota_left) / policy.refill_per_second
            self._add_timer(actor, _REFILL, self.clock.now() + wait)
        if self.on_pause is not None and actor.pause is not None:
            # Run as a task, not inside the turn: the hook may be async (e.g. await actor.resume()),
            # and an exception in it is the host's bug, which surfaces from the runtime.
            self._task_group().start_soon(self._run_pause_hook, self.on_pause, actor, actor.pause)

    @staticmethod
    async def _run_pause_hook(hook: Callable[[Actor, PauseEvent], Any], actor: Actor, event: PauseEvent) -> None:
        result = hook(actor, event)
        if inspect.isawaitable(result):
            await result

    def _on_failed(self, actor: Actor) -> None:
        self._resident.pop(actor.id, None)

    # ---- residency ----

    def _resident_added(self, actor: Actor) -> None:
        """``actor``'s VM just became live (spawn, wake, restore): keep within ``max_resident``."""
        actor.last_active = self.clock.now()
        self._resident[actor.id] = actor
        self._resident.move_to_end(actor.id)
        if self.max_resident is not None and len(self._resident) > self.max_resident:
            self._shed(len(self._resident) - self.max_resident, None, keep=actor)

    def _hibernate(self, actor: Actor) -> bool:
        if actor._hibernate_now():
            self._resident.pop(actor.id, None)
            return True
        return False

    def _enforce_residency(self) -> None:
        """Hibernate least recently active actors beyond ``max_resident`` or idle ``hibernate_after``."""
        limit = self.max_resident
        if limit is None and self.hibernate_after is None:
            return
        self._shed(len(self._resident) - limit if limit is not None else 0, self.hibernate_after)

    def _shed(self, excess: int, idle_after: float | None, keep: Actor | None = None) -> None:
        """Hibernate ``excess`` actors and those idle ``idle_after`` seconds, least recently active first.

        ``_resident`` is ordered by ``last_active`` (oldest first), so the scan
        stops at the first actor that is neither excess nor stale.
        """
        now = self.clock.now()
        victims: list[Actor] = []
        for actor in self._resident.values():
            stale = idle_after is not None and now - actor.last_active >= idle_after
            if excess <= 0 and not stale:
                break
            if actor is keep or actor._running:
                continue
            victims.append(actor)
            excess -= 1
        for actor in victims:
            if not self._hibernate(actor):
                # It cannot be snapshotted now: count it as active so it is retried later,
                # not again and again at once.
                actor.last_active = now
                self._resident.move_to_end(actor.id)

    def _next_idle_deadline(self) -> float | None:
        """When the least recently active resident actor reaches ``hibernate_after``."""
        if self.hibernate_after is None or not self._resident:
            return None
        oldest = next(iter(self._resident.values()))
        return oldest.last_active + self.hibernate_after

    # ---- async host calls and timers ----

    def _start_host_call(self, actor: Actor, token: int, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self._in_flight += 1
        self._task_group().start_soon(self._host_call, actor, token, fn, args)

    async def _host_call(self, actor: Actor, token: int, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            if isinstance(fn, RuntimeImport):
                ok, value = False, {"name": "TypeError", "message": f"{fn!r} cannot be called this way"}
            else:
                ok, value = await run_async_import(fn, list(args))
        finally:
            self._in_flight -= 1
        actor._deliver_completion(token, ok, value)
        self._check_idle()

    def _add_timer(self, actor: Actor, token: int, due: float) -> None:
        earliest = self._timers[0][0] if self._timers else None
        heapq.heappush(self._timers, (due, next(self._timer_seq), actor, token))
        if earliest is None or due < earliest:
            if self._timer_scope is not None:
                self._timer_scope.cancel()
            if self._timer_wakeup is not None:
                self._timer_wakeup.set()

    async def _run_timers(self) -> None:
        timers = self._timers
        while True:
            if not timers:
                wakeup = self._timer_wakeup = anyio.Event()
                await wakeup.wait()
                self._timer_wakeup = None
                continue
            due = timers[0][0]
            with anyio.CancelScope() as scope:
                self._timer_scope = scope
                await self.clock.sleep_until(due)
            self._timer_scope = None
            now = self.clock.now()
            while timers and timers[0][0] <= now:
                _, _, actor, token = heapq.heappop(timers)
                if token == _REFILL:
                    actor._refilled()
                else:
                    actor._deliver_completion(token, True, None)
            self._check_idle()


__all__ = ["Runtime", "encode_record"]

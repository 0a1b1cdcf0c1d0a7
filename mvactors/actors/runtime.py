"""``Runtime``: many actors in one event loop (anyio: asyncio or trio).

One scheduler task runs turns for actors with mail, round-robin; guest code
is synchronous, so a turn never yields and turns of one actor never overlap.
Asynchronous host calls run through the runtime's :class:`HostCalls` and come
back as completion messages.  Actors hibernate to records (the least recently
active beyond ``max_resident``, or after ``hibernate_after`` idle seconds of
the runtime's clock) and wake on their next message.  ``adopt`` and ``evict``
move actors between runtimes (and processes) as :class:`ActorRecord` values.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

import anyio
import anyio.abc
import anyio.lowlevel

from ..errors import ActorError, ActorEvicted, ActorExists, ActorFailed, RuntimeNotRunning
from ..store.base import CheckpointStore
from ..vm import SnapshotLike
from ..vm.machine import DEFAULT_TIME_LIMIT, check_time_limit
from ._conductor import Conductor, ErrorHook, PauseHook, TurnHook
from ._residency import Eviction, residency_for
from .actor import Actor
from .cell import Cell
from .clock import Clock, VirtualClock, WallClock
from .effects import HostCalls
from .gas import GasPolicy
from .metrics import percentile
from .record import ActorRecord

_log = logging.getLogger("mvactors")


class Runtime:
    """Hosts actors in an anyio task group.

    ``clock`` is ``"wall"`` (default), ``"virtual"`` (deterministic simulated
    time that jumps to the next timer when every task is blocked) or a Clock.
    ``max_resident`` caps live VMs: when a VM wakes beyond it, the least
    recently active other actors hibernate at once (also with queued mail or a
    paused turn; never the one running).  ``eviction`` picks which:
    ``"lru"`` (default) the least recently active, ``"segmented"`` those outside
    an established set of about 90% of ``max_resident``, which a scan of one-shot
    actors or a cycle of more actors than the cap (a fleet polled in turn) does
    not flush (see docs/perf-notes.md).  ``hibernate_after`` hibernates
    actors idle that many seconds of the runtime's clock.
    ``store`` is a CheckpointStore for :meth:`Actor.checkpoint` / :meth:`restore`.
    ``on_pause(actor, event)`` is called (as a task; it may be async) when an actor runs out of gas.
    ``host_calls`` runs every host call (a :class:`HostCalls` subclass intercepts them).
    ``on_turn(actor, outcome)`` is called synchronously after every completed turn of any
    actor, between turns (its exceptions come out of the runtime, or of the call that ran the turn).
    ``on_error(actor, exc)`` is called for failures no caller receives: a turn of a
    ``send()`` (or of an async chain nobody awaits) that raised, and an actor failing for
    good; like ``on_pause`` it runs as a task and may be async.  Such failures count in
    ``stats()["unawaited_failures"]`` (every turn that raised in ``"failed_turns"``), show on
    ``actor.last_failure`` and are logged on the ``mvactors`` logger (no handlers installed).
    ``time_limit`` is every actor VM's hard stop (see :meth:`VM.restore`): seconds one entry
    into the engine may run before the actor fails; ``None`` runs them on the engine without
    the stop's checks (guest-heavy turns ~25% faster) for snapshots you trust, with gas
    bounding the guest.
    """

    def __init__(
        self,
        clock: Literal["wall", "virtual"] | Clock = "wall",
        max_resident: int | None = None,
        store: CheckpointStore | None = None,
        *,
        hibernate_after: float | None = None,
        eviction: Eviction = "lru",
        mailbox_size: int | None = None,
        overflow: Literal["wait", "raise"] = "wait",
        on_pause: PauseHook | None = None,
        host_calls: HostCalls | None = None,
        on_turn: TurnHook | None = None,
        on_error: ErrorHook | None = None,
        time_limit: float | None = DEFAULT_TIME_LIMIT,
    ) -> None:
        self.time_limit = check_time_limit(time_limit)
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
        self.store = store
        self.mailbox_size = mailbox_size
        self.overflow: Literal["wait", "raise"] = overflow
        self._actors: dict[str, Actor] = {}
        self._residency = residency_for(eviction, self.clock, max_resident, hibernate_after)
        # The turn machinery, and the RuntimeServices every Actor and the HostCalls use.
        self._conductor = Conductor(self, self.clock, self._residency,
                                    host_calls if host_calls is not None else HostCalls(), on_turn, on_error, on_pause)
        self._ids = itertools.count(1)
        self._started = 0.0

    # The hooks live on the conductor, which reads them on every turn without a hop.

    @property
    def on_pause(self) -> PauseHook | None:
        return self._conductor.on_pause

    @on_pause.setter
    def on_pause(self, hook: PauseHook | None) -> None:
        self._conductor.on_pause = hook

    @property
    def on_turn(self) -> TurnHook | None:
        return self._conductor.on_turn

    @on_turn.setter
    def on_turn(self, hook: TurnHook | None) -> None:
        self._conductor.on_turn = hook

    @property
    def on_error(self) -> ErrorHook | None:
        return self._conductor.on_error

    @on_error.setter
    def on_error(self, hook: ErrorHook | None) -> None:
        self._conductor.on_error = hook

    @property
    def host_calls(self) -> HostCalls:
        return self._conductor.host_calls

    @host_calls.setter
    def host_calls(self, host_calls: HostCalls) -> None:
        self._conductor.host_calls = host_calls

    @property
    def max_resident(self) -> int | None:
        return self._residency.max_resident

    @max_resident.setter
    def max_resident(self, value: int | None) -> None:
        self._residency.max_resident = value

    @property
    def eviction(self) -> Eviction:
        """Which actors ``max_resident`` hibernates: ``"lru"`` or ``"segmented"`` (fixed at construction)."""
        return self._residency.eviction

    @property
    def hibernate_after(self) -> float | None:
        return self._residency.hibernate_after

    @hibernate_after.setter
    def hibernate_after(self, value: float | None) -> None:
        self._residency.hibernate_after = value

    # ---- lifecycle ----

    @property
    def running(self) -> bool:
        """Inside ``async with``: actors can be spawned and take messages."""
        return self._conductor.running

    async def __aenter__(self) -> Runtime:
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._started = time.perf_counter()
        self._conductor.start(tg)
        if isinstance(self.clock, VirtualClock) and self.clock.autojump:
            tg.start_soon(self.clock.drive)
        return self

    async def __aexit__(self, *exc: Any) -> bool | None:
        tg = self._conductor.tg
        assert tg is not None
        tg.cancel_scope.cancel()
        try:
            return await tg.__aexit__(*exc)
        except BaseExceptionGroup as group:
            for error in group.exceptions:
                if error is not exc[1]:
                    _log.error("the runtime stopped: one of its tasks raised %r", error, exc_info=error)
            # A single failure (usually the body's own) comes out as itself, as from plain code.
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise
        finally:
            self._conductor.stop()
            for actor in self._actors.values():
                # Callers still waiting get an error instead of waiting forever.
                actor.cell.close(_stopped_error(actor.id))

    # ---- actors ----

    def _new_actor(self, actor_id: str | None, imports: Mapping[int, Callable[..., Any]] | None,
                   gas: GasPolicy | None, mailbox_size: int | None, overflow: Literal["wait", "raise"] | None) -> Actor:
        actor = Actor(self._conductor, self._new_id(actor_id))
        host_calls = self.host_calls
        actor.cell = Cell(actor.id, self.clock, imports or {}, gas or GasPolicy(),
                           mailbox_size if mailbox_size is not None else self.mailbox_size, overflow or self.overflow,
                           lambda imports, record: host_calls.bind(actor, imports, record), self.time_limit)
        return actor

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
        self._conductor.task_group()
        actor = self._new_actor(actor_id, imports, gas, mailbox_size, overflow)
        actor.cell.start(snapshot)
        self._actors[actor.id] = actor
        self._residency.added(actor)
        self._residency.enforce()
        await anyio.lowlevel.checkpoint()
        return actor

    async def adopt(
        self,
        record: ActorRecord,
        actor_id: str,
        imports: Mapping[int, Callable[..., Any]] | None = None,
        gas: GasPolicy | None = None,
        *,
        mailbox_size: int | None = None,
        overflow: Literal["wait", "raise"] | None = None,
    ) -> Actor:
        """Run the actor ``record`` describes here, as ``actor_id`` (no turn runs by itself).

        The async host calls it awaited are issued again through ``host_calls``
        (at-least-once); its sleeps fire at their absolute due time.  Raises
        ActorError (``MVA_UNRESOLVED_IMPORT``) when it awaits a host function
        ``imports`` lacks, and the VM's errors for a snapshot that does not
        restore; either way nothing is left behind.
        """
        self._conductor.task_group()
        actor = self._new_actor(actor_id, imports, gas, mailbox_size, overflow)
        calls = actor.cell.adopt(record)
        self._actors[actor.id] = actor
        self._residency.added(actor)
        for call in calls:
            self.host_calls.start(actor, call)
        await anyio.lowlevel.checkpoint()
        return actor

    def evict(self, actor_id: str) -> ActorRecord:
        """Take the actor out of this runtime, between turns, and return its record.

        Its queued messages and waiting callers get ActorEvicted (a record
        holds no mail); its in-flight host calls are dropped (their outcomes are
        ignored) and its timers forgotten.  The handle stays, in state ``"evicted"``.
        A failed actor is removed too, and ActorFailed raised: it has no record to give.
        """
        actor = self.get(actor_id)
        cell = actor.cell
        if cell.running:
            raise ActorError(f"actor {actor_id!r} is running a turn; evict it between turns", "MVA_ACTOR_RUNNING")
        failure = cell.failure
        record = None
        if failure is None:
            try:
                record = actor.record()
            except Exception as exc:  # its VM cannot be recorded (a fatal engine error): it fails instead
                cell.fail(exc)
                failure = exc
        del self._actors[actor_id]
        cell.evicted = True
        cell.close(lambda: ActorEvicted(f"actor {actor_id} was evicted from this runtime before it answered"))
        self._conductor.forget(actor)
        if record is None:
            raise ActorFailed(f"actor {actor_id} failed ({failure}); it is removed, with no record to give")
        return record

    async def restore(
        self,
        actor_id: str,
        imports: Mapping[int, Callable[..., Any]] | None = None,
        gas: GasPolicy | None = None,
    ) -> Actor:
        """Bring back an actor from the store by ID (:meth:`adopt` of its last checkpoint).

        Pending host calls are run again (at-least-once); pending sleeps fire
        at their absolute due time.
        """
        self._conductor.task_group()
        if self.store is None:
            raise ActorError("the runtime has no store; pass store= to Runtime", "MVA_NO_STORE")
        if actor_id in self._actors:
            raise ActorExists(f"actor {actor_id!r} is already running here")
        data = await self.store.load(actor_id)
        if data is None:
            raise KeyError(f"no checkpoint for actor {actor_id!r} in the store")
        return await self.adopt(ActorRecord.decode(data), actor_id, imports, gas)

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
        return len(self._residency)

    async def sleep(self, seconds: float) -> None:
        """Sleep on the runtime's clock (virtual time in simulations)."""
        await self.clock.sleep_until(self.clock.now() + seconds)

    async def wait_idle(self) -> None:
        """Return once no actor has mail, no async host call is running and no timer is pending."""
        await self._conductor.wait_idle()

    def stats(self) -> dict[str, Any]:
        """Counters across all actors."""
        conductor = self._conductor
        totals = conductor.totals
        lat = sorted(conductor.latencies)
        elapsed = time.perf_counter() - self._started if self._started else 0.0
        cells = [a.cell for a in self._actors.values()]
        return {
            "actors": len(cells),
            "resident": len(self._residency),
            "hibernated": sum(1 for c in cells if c.vm is None and c.failure is None),
            "paused": sum(1 for c in cells if c.pause is not None),
            "failed": sum(1 for c in cells if c.failure is not None),
            "turns": totals.turns,
            "failed_turns": totals.failed_turns,
            "unawaited_failures": conductor.unawaited_failures,
            "turns_per_second": totals.turns / elapsed if elapsed else 0.0,
            "pauses": totals.pauses,
            "gas_used": totals.gas_used,
            "hibernations": sum(c.metrics.hibernations for c in cells),
            "rehydrations": sum(c.metrics.rehydrations for c in cells),
            "mailbox_depth": sum(len(c.mailbox) for c in cells),
            "host_calls_in_flight": conductor.in_flight,
            "timers": len(conductor.timers),
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
            raise ActorExists(f"an actor with ID {actor_id!r} already exists")
        return actor_id


def _stopped_error(actor_id: str) -> Callable[[], BaseException]:
    return lambda: RuntimeNotRunning(f"the runtime stopped before actor {actor_id} answered")


__all__ = ["Eviction", "Runtime"]

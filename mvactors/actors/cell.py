"""``Cell``: one actor's state (mailbox, VM live or at rest, awaited calls) and the turn that advances it.

A turn is one delivered message (a call of an export, or the completion of an
asynchronous host call) plus everything the guest's job queue runs before it
goes idle.  :meth:`Cell.run_turn` runs one and returns a :class:`TurnOutcome`
saying what the runtime must do next (host calls to start, a pause, a
failure); a cell never calls into the runtime.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Literal

import anyio

from ..errors import (
    ActorError,
    ActorFailed,
    Cancelled,
    MicroviumError,
)
from ..imports import AsyncCall
from ..vm import VM, SnapshotLike
from ._callers import Callers, TurnCalls
from ._turns import TurnKind, TurnOutcome, Turns, _kind_of
from .clock import Clock
from .gas import GasMeter, GasPolicy, HostCallRecord, PauseEvent, PauseReason
from .mailbox import NO_MAIL, Message, Reply
from .metrics import ActorMetrics
from .record import ActorRecord

ActorState = Literal["idle", "running", "paused", "hibernated", "failed", "evicted"]
ImportBinder = Callable[[Mapping[int, Callable[..., Any]], "list[HostCallRecord] | None"],
                        Mapping[int, Callable[..., Any]]]

_log = logging.getLogger("mvactors")


class Cell(Turns):
    """One actor's state, advanced one turn at a time by its runtime.

    It owns the mailbox (and the wait for room in it), the VM live or at rest, the
    callers book, the gas meter and the failure; the runtime's scheduler, residency
    policy and timers keep their own books about it.
    """

    __slots__ = ()  # (declared by Turns: a fleet keeps millions of cells, most hibernated)

    def __init__(self, actor_id: str, clock: Clock, imports: Mapping[int, Callable[..., Any]], gas: GasPolicy,
                 mailbox_size: int | None, overflow: Literal["wait", "raise"], bind: ImportBinder,
                 time_limit: float | None) -> None:
        self.id = actor_id
        self.time_limit = time_limit
        self.clock = clock
        self.gas = gas
        self.meter = GasMeter(gas, clock) if gas.active else None
        self.mailbox: deque[Message] = deque()
        self.mailbox_size = mailbox_size
        self.overflow = overflow
        self.metrics = ActorMetrics(mailbox=self.mailbox)
        self.pause: PauseEvent | None = None
        self.failure: BaseException | None = None
        self.last_failure: BaseException | None = None
        self.evicted = False
        self.turns = 0  # over the actor's whole life (carried by its records)
        # Shared, not copied: the runtime hands every actor with the same map the same dict.
        self.imports = imports
        # With gas, a turn can be rolled back: the synchronous host calls it made are reported.
        self._vm_imports = bind(imports, self.meter.host_calls if self.meter is not None else None)
        self.vm: VM | None = None
        self._rest: ActorRecord | None = None  # the VM at rest, while hibernated
        self._callers: Callers | None = None  # allocated by the first turn that leaves something awaited
        self._turn_calls: TurnCalls | None = None
        self._space: anyio.Event | None = None  # set when the mailbox has room again
        self.running = False

    # ---- state ----

    @property
    def state(self) -> ActorState:
        if self.evicted:
            return "evicted"
        if self.failure is not None:
            return "failed"
        if self.running:
            return "running"
        if self.pause is not None:
            return "paused"
        if self.vm is None:
            return "hibernated"
        return "idle"

    @property
    def quota_left(self) -> int | None:
        return self.meter.quota_left if self.meter is not None else None

    def _book(self) -> Callers:
        callers = self._callers
        if callers is None:
            callers = self._callers = Callers()
        return callers

    # ---- life: start, adopt, hibernate, record ----

    def start(self, snapshot: SnapshotLike) -> None:
        """Restore ``snapshot`` as this actor's VM (no guest code runs)."""
        self._attach(VM.restore(snapshot, self._vm_imports, time_limit=self.time_limit))

    def adopt(self, record: ActorRecord) -> list[AsyncCall]:
        """Take over ``record``'s state and wake its VM; returns the awaited calls to start again.

        Promises awaited where the record was made have no caller here: they wait, unwatched,
        for :meth:`reply_for` (until the VM next hibernates or closes).
        """
        calls = record.awaited_calls(self.id, self.imports, self.clock)
        self._rest = record
        self._wake()
        callers = self._callers
        if callers is not None:
            callers.adopted()
        self.turns = record.turns
        if self.meter is not None and self.gas.quota is not None and record.quota_left is not None:
            self.meter.quota_left = record.quota_left
        if calls:
            callers = self._book()
            for call in calls:
                callers.expect(call, None)
        return calls

    def _attach(self, vm: VM) -> VM:
        vm.async_handler = self._on_async_call
        self.vm = vm
        return vm

    def _wake(self) -> VM:
        rest = self._rest
        assert rest is not None
        vm, refs = VM.wake(rest.hibernation(), self._vm_imports, time_limit=self.time_limit)
        self._rest = None
        if refs or self._callers is not None:
            self._book().woke({int(k): v for k, v in refs.items()})
        self.metrics.rehydrations += 1
        _log.debug("actor %s woke from hibernation", self.id)
        return self._attach(vm)

    def hibernate(self) -> bool:
        """Snapshot the VM and release it (queued mail and a paused turn are kept); False if it cannot now."""
        vm = self.vm
        if vm is None or self.running or self.failure is not None:
            return False
        callers = self._callers
        try:
            hibernation = vm.hibernate(keep=callers.promises if callers is not None else {})
        except MicroviumError:
            return False  # cannot be snapshotted right now: stays resident
        # In memory, the awaited calls stay in the callers book: the record needs only the VM's part.
        self._rest = ActorRecord.from_hibernation(hibernation, {}, None, 0)
        if callers is not None:
            callers.rested()  # the record keeps the promises; wake() brings them back
        if not self.mailbox:
            # An empty deque still holds a ~760 B block; a hibernated actor drops it.
            self.mailbox = self.metrics.mailbox = NO_MAIL
        vm.close()
        self.vm = None
        self.metrics.hibernations += 1
        _log.debug("actor %s hibernated", self.id)
        return True

    def record(self, collect: bool | None = True) -> ActorRecord:
        """The actor's state now, between turns, for another runtime or process (the VM stays as it is)."""
        callers = self._callers
        if self.vm is not None:
            # Only promises a caller waits on travel; a send()'s rejection is reported by this runtime.
            hibernation = self.vm.hibernate(keep=callers.kept() if callers is not None else {}, collect=collect)
        else:
            assert self._rest is not None
            hibernation = self._rest.hibernation()
        written_at = time.time()
        pending = callers.pending(self.clock, written_at) if callers is not None else {}
        return ActorRecord.from_hibernation(hibernation, pending, self.quota_left, self.turns, written_at)

    def awaiting(self) -> dict[int, Reply]:
        """The callers :meth:`record` keeps the promises of, by the key each promise travels under."""
        return self._callers.awaiting() if self._callers is not None else {}

    def reply_for(self, key: int) -> Reply:
        """A caller for the promise an adopted record kept under ``key``: answered when it settles."""
        callers, vm = self._callers, self.vm
        reply = callers.claim(key) if callers is not None and vm is not None else None
        if reply is None:
            raise ActorError(f"actor {self.id!r} holds no unclaimed promise kept under key {key!r} (claim it "
                             "right after adopt, before the actor hibernates)", "MVA_NO_SUCH_PROMISE")
        assert callers is not None and vm is not None
        callers.settle(vm, None)  # it may have settled in a turn that ran before the claim
        return reply

    # ---- mailbox ----

    def mail(self) -> deque[Message]:
        """The mailbox, for adding to it (a hibernated actor with no mail holds none)."""
        mailbox = self.mailbox
        if mailbox is NO_MAIL:
            mailbox = self.mailbox = self.metrics.mailbox = deque()
        return mailbox

    def full(self) -> bool:
        return self.mailbox_size is not None and len(self.mailbox) >= self.mailbox_size

    async def room(self) -> None:
        """Wait until a message leaves the mailbox (or the actor closes)."""
        space = self._space
        if space is None:
            space = self._space = anyio.Event()
        await space.wait()

    def _made_room(self) -> None:
        space = self._space
        if space is not None:
            space.set()
            self._space = None

    def deliver(self, token: int, ok: bool, value: Any) -> bool:
        """Queue the completion of async host call ``token``; False when nothing awaits it any more.

        Never refused for capacity: capacity is for senders.
        """
        callers = self._callers
        if self.failure is not None or self.evicted or callers is None or token not in callers.awaited:
            return False
        self.mail().append(Message(token=token, ok=ok, value=value))
        return True

    def withdraw(self, message: Message) -> None:
        """Take back a message whose caller gave up (timeout, cancellation) unless its turn is running."""
        if not (self.running and self.mailbox and self.mailbox[0] is message):
            for queued in self.mailbox:
                if queued is message:
                    self.mailbox.remove(message)  # identity: Message compares by identity
                    self._made_room()
                    break
        if self._callers is not None:
            self._callers.withdraw(message.reply)

    def close(self, error: Callable[[], BaseException]) -> None:
        """Answer every waiting caller with ``error()`` and release the VM (failure, runtime stopped, eviction)."""
        for message in self.mailbox:
            if message.reply is not None:
                message.reply.fail(error())
        self.mailbox.clear()
        if self._callers is not None:
            self._callers.close(error)
        self._made_room()
        if self.vm is not None:
            self.vm.close()
            self.vm = None

    # ---- gas ----

    def resume(self, extra_gas: int | None) -> None:
        pause = self.pause
        assert pause is not None and self.meter is not None
        self.meter.resume(extra_gas, pause.reason)
        self.pause = None

    def grant_gas(self, extra_gas: int | None, reason: PauseReason, refill: bool) -> None:
        """What :meth:`resume` gives, for an actor paused in another process: ``extra_gas`` for the next
        turn (added to the quota too when ``reason`` is "quota"), and a full quota bucket (``refill``)."""
        meter = self.meter
        if meter is None:
            return
        if refill and meter.policy.quota is not None:
            meter.quota_left = meter.policy.quota
        if extra_gas is not None:
            meter.resume(extra_gas, reason)

    def cancel_paused(self) -> Message:
        """Drop the message whose turn ran out of gas (its caller gets Cancelled); the pause ends."""
        if self.pause is None:
            raise ActorError(f"actor {self.id} is not paused (state {self.state})", "MVA_NOT_PAUSED")
        head = self.mailbox[0]
        if head.token:
            raise ActorError(f"actor {self.id} paused in the {head.describe()}: a completion cannot be dropped "
                             "(its guest code awaits it); resume it with more gas instead", "MVA_NOT_CANCELLABLE")
        self.mailbox.popleft()
        self._made_room()
        if head.reply is not None:
            head.reply.fail(Cancelled(f"actor {self.id}: the {head.describe()} was cancelled before it ran"))
        self.pause = None
        if self.meter is not None:
            self.meter.extra = None
        return head

    def refilled(self) -> bool:
        """The quota bucket is full again after a quota pause: True if the paused turn may run again."""
        pause = self.pause
        if pause is None or pause.reason != "quota" or self.failure is not None or self.meter is None:
            return False  # resumed by hand meanwhile
        self.meter.refill()
        self.pause = None
        return True

    # ---- turns ----

    def fail(self, exc: BaseException, kind: TurnKind | None = None, reply: Reply | None = None) -> TurnOutcome:
        """The actor failed for good: every waiting caller gets ActorFailed, the VM is released.

        ``kind``/``reply``: the turn that was running and the caller of the message it applied, if
        it applied one; without ``kind``, the turn of the message at the head of the mailbox.
        """
        if kind is None:
            kind = _kind_of(self.mailbox[0], self._callers) if self.mailbox else "message"
        self.running = False
        self.failure = self.last_failure = exc
        _log.error("actor %s failed for good: %s", self.id, exc)
        self.close(lambda: ActorFailed(f"actor {self.id} failed: {exc}"))
        return TurnOutcome(kind, True, failure=exc, reply=reply)

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
from typing import Any, Literal, NamedTuple

import anyio

from ..errors import (
    ActorError,
    ActorFailed,
    Cancelled,
    GasExhausted,
    GuestError,
    MicroviumError,
    UpgradeFailed,
    VMUnusable,
)
from ..imports import AsyncCall
from ..vm import VM, GuestPromise, SnapshotLike
from ._callers import Callers, TurnCalls, Unawaited
from .clock import Clock
from .gas import GasMeter, GasPolicy, HostCallRecord, PauseEvent, PauseReason
from .mailbox import NO_MAIL, Message, Reply, plain
from .metrics import ActorMetrics
from .record import ActorRecord

ActorState = Literal["idle", "running", "paused", "hibernated", "failed", "evicted"]
TurnKind = Literal["message", "completion", "timer"]
ImportBinder = Callable[[Mapping[int, Callable[..., Any]], "list[HostCallRecord] | None"],
                        Mapping[int, Callable[..., Any]]]

_log = logging.getLogger("mvactors")


class TurnOutcome(NamedTuple):
    """What one turn did that the runtime must act on.

    ``kind``: the message that ran (an export call, an async completion, a
    fired sleep).  ``failed``: the turn raised (its caller got the error) or
    the actor failed for good (``failure``).  ``calls``: async host calls to
    start.  ``pause``: the turn ran out of gas and was rolled back (it did not
    complete); ``refill_at``: when a refilling quota lets it run again.
    ``woke``: the VM came back from its record for this turn.  ``error``: what a failed
    turn raised when no caller was there to receive it (a ``send()``, or an async chain
    nobody awaits).  ``reply``: the caller of the mailbox message this turn applied (``None`` for
    completions, timers, a ``send()``, and a turn that applied nothing): how a host that
    submitted several calls learns which one ran, without keeping a queue of its own.
    (A NamedTuple: immutable, and cheap enough to make on the per-turn path.)
    """

    kind: TurnKind
    failed: bool = False
    calls: tuple[AsyncCall, ...] = ()
    pause: PauseEvent | None = None
    refill_at: float | None = None
    failure: BaseException | None = None
    woke: bool = False
    error: BaseException | None = None
    reply: Reply | None = None


UPGRADE = -2  # the export ID of Actor.upgrade's mailbox entry (no guest export is negative)

# Most turns start nothing, wake nothing and fail nothing: one shared outcome each.
_KINDS: tuple[TurnKind, ...] = ("message", "completion", "timer")
_PLAIN = {(kind, failed): TurnOutcome(kind, failed) for kind in _KINDS for failed in (False, True)}


class Cell:
    """One actor's state, advanced one turn at a time by its runtime.

    It owns the mailbox (and the wait for room in it), the VM live or at rest, the
    callers book, the gas meter and the failure; the runtime's scheduler, residency
    policy and timers keep their own books about it.
    """

    # A fleet keeps up to millions of these, most hibernated: no per-instance dict.
    __slots__ = (
        "_callers",
        "_rest",
        "_space",
        "_turn_calls",
        "_vm_imports",
        "clock",
        "evicted",
        "failure",
        "gas",
        "id",
        "imports",
        "last_failure",
        "mailbox",
        "mailbox_size",
        "meter",
        "metrics",
        "overflow",
        "pause",
        "running",
        "time_limit",
        "turns",
        "vm",
    )

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

    def _on_async_call(self, token: int, import_id: int, fn: Callable[..., Any], args: list[Any]) -> None:
        # Started only when the turn commits: a rolled-back turn must leave nothing running.
        calls = self._turn_calls
        if calls is None:
            calls = self._turn_calls = []
        calls.append((token, import_id, fn, args))

    def run_turn(self) -> TurnOutcome:
        """Process the message at the head of the mailbox (synchronously)."""
        message = self.mailbox[0]
        vm = self.vm
        woke = vm is None
        if vm is None:
            try:
                vm = self._wake()
            except MicroviumError as exc:
                return self.fail(exc, _kind_of(message, self._callers))
        if message.token:
            return self._apply_completion(vm, message, woke)
        if message.export_id == UPGRADE:
            return self._apply_upgrade(vm, message, woke)
        return self._apply_message(vm, message, woke)

    def _apply_upgrade(self, vm: VM, message: Message, woke: bool) -> TurnOutcome:
        """``Actor.upgrade``'s turn: the new VM replaces the old one, or the old one stays (atomic)."""
        snapshot, migrate = message.args
        error: BaseException | None = None
        callers = self._callers
        new: VM | None = None
        if callers is not None and callers.awaited:
            pending = ", ".join(f"host function {c.import_id} (call {t})" if c.due is None else f"a timer (call {t})"
                                for t, c in callers.awaited.items())
            error = UpgradeFailed(f"actor {self.id} awaits {pending}; upgrade it once they complete")
        else:
            try:
                value = None
                if migrate is not None:
                    # OUT runs on a copy: should it change state and then IN throw, the actor is untouched.
                    copy, _ = VM.wake(self.record(collect=False).hibernation(), self._vm_imports,
                                      time_limit=self.time_limit)
                    try:
                        value = plain(copy.exports[migrate[0]]())
                    finally:
                        copy.close()
                new = VM.restore(snapshot, self._vm_imports, time_limit=self.time_limit)
                if migrate is not None:
                    new.exports[migrate[1]](value)
            except Exception as exc:
                if new is not None:
                    new.close()
                error = UpgradeFailed(f"the upgrade of actor {self.id} was not applied (it keeps its old code and "
                                      f"state): {type(exc).__name__}: {exc}")
        if error is None and new is not None:
            vm.close()
            self._callers = None  # (nothing was awaited: the old VM's promise book goes with it)
            self._attach(new)
        self.mailbox.popleft()
        if self._space is not None:
            self._made_room()
        self.metrics.turns += 1
        self.turns += 1
        assert message.reply is not None
        if error is None:
            message.reply.resolve(None)
        else:
            self.metrics.failed_turns += 1
            message.reply.fail(error)
        return TurnOutcome("message", error is not None, (), None, None, None, woke, None, message.reply)

    def _apply_message(self, vm: VM, message: Message, woke: bool) -> TurnOutcome:
        """A call of an export: its caller gets the result, or waits on the promise the export returned."""
        meter = self.meter
        if meter is not None:
            meter.begin(vm)
        self._turn_calls = None
        self.running = True
        started = time.perf_counter()
        result: Any = None
        error: BaseException | None = None
        try:
            result = vm.exports[message.export_id](*message.args)
        except GasExhausted:
            return self._pause(vm, message, "message", woke)
        except VMUnusable as exc:
            if meter is None:
                return self._lost(message, "message", exc)
            error = self._undo(vm, meter, exc)
        except Exception as exc:
            error = _detached(exc)
        finally:
            self.running = False
        reply = message.reply
        chain = None
        if reply is None and error is None and isinstance(result, GuestPromise):
            reply = Unawaited(message.describe())
        if reply is not None:
            if error is not None:
                reply.fail(error)
            elif isinstance(result, GuestPromise):
                chain = self._book().wait_on(result, reply)
            else:
                try:
                    reply.resolve(plain(result))
                except Exception as exc:
                    reply.fail(exc)
            return self._finish(vm, message, "message", woke, started, error, chain, None, "")
        return self._finish(vm, message, "message", woke, started, error, None, error, "")

    def _apply_completion(self, vm: VM, message: Message, woke: bool) -> TurnOutcome:
        """The outcome of an async host call (or a fired sleep) continues the guest chain that awaits it."""
        token = message.token
        callers = self._book()
        # The call whose awaited chain this completion continues (its caller waits on the result).
        chain, awaited = callers.take(token)
        kind: TurnKind = "timer" if awaited is not None and awaited.due is not None else "completion"
        meter = self.meter
        if meter is not None:
            meter.begin(vm)
        self._turn_calls = None
        self.running = True
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            vm.resolve_async(token, message.ok, message.value)
        except GasExhausted:
            callers.put_back(token, chain, awaited)  # it is delivered again on resume
            return self._pause(vm, message, kind, woke)
        except VMUnusable as exc:
            if meter is None:
                return self._lost(message, kind, exc)
            error = self._undo(vm, meter, exc)
        except Exception as exc:
            error = _detached(exc)
        finally:
            self.running = False
        if error is None:
            return self._finish(vm, message, kind, woke, started, None, chain, None, "")
        if chain is None:
            return self._finish(vm, message, kind, woke, started, error, None, error, "")
        # The continuation of an awaited chain failed (a host function raised): its
        # promise can never settle, so its caller gets the error.
        waiting = callers.drop(chain)
        if isinstance(waiting, Unawaited):
            return self._finish(vm, message, kind, woke, started, error, None, error,
                                f"{waiting.message}, at the {message.describe()}")
        if waiting is not None:
            waiting.fail(error)
            return self._finish(vm, message, kind, woke, started, error, None, None, "")
        return self._finish(vm, message, kind, woke, started, error, None, error, "")

    def _finish(self, vm: VM, message: Message, kind: TurnKind, woke: bool, started: float,
                error: BaseException | None, chain: int | None, unobserved: BaseException | None,
                described: str) -> TurnOutcome:
        """The applied message leaves the mailbox: count the turn, start what it awaits, answer settled callers.

        ``chain``: the call id whose promise chain the turn ran (None when no caller waits on
        it).  ``unobserved``: an error no caller receives, ``described`` where it happened.
        """
        self.mailbox.popleft()
        if self._space is not None:
            self._made_room()
        metrics = self.metrics
        meter = self.meter
        if meter is not None:
            metrics.gas_used += meter.end(vm)
        metrics.turns += 1
        self.turns += 1
        if error is not None:
            metrics.failed_turns += 1
            self.last_failure = error
        metrics.record_latency(time.perf_counter() - started)
        turn_calls = self._turn_calls
        if turn_calls:
            self._turn_calls = None
            calls = self._book().commit(self.id, self.clock, turn_calls, chain)
        else:
            calls = ()
        callers = self._callers
        if callers is not None and callers.waiting:
            # A send()'s promise is looked at only when its own chain ran a turn that awaits
            # nothing new (where it can have settled): a fleet's endless loops cost no poll.
            rejected = callers.settle(vm, None if calls else chain)
            if rejected is not None:
                self.last_failure = rejected[1]
                if unobserved is None:
                    unobserved, described = rejected[1], f"{rejected[0]} (its promise rejected)"
        if unobserved is not None:
            _log.warning("actor %s: the %s failed and no caller awaits it: %s",
                         self.id, described or message.describe(), unobserved)
        elif error is not None:
            _log.debug("actor %s: the %s failed (its caller gets the error): %s", self.id, message.describe(), error)
        if calls or woke or unobserved is not None or message.reply is not None:
            return TurnOutcome(kind, error is not None, calls, None, None, None, woke, unobserved, message.reply)
        return _PLAIN[kind, error is not None]

    def _pause(self, vm: VM, message: Message, kind: TurnKind, woke: bool) -> TurnOutcome:
        """The turn ran out of gas: it is undone and its message stays at the head of the mailbox."""
        meter = self.meter
        assert meter is not None
        self.running = False
        pause = self.pause = meter.pause(vm, message.describe())
        self._turn_calls = None
        self.metrics.pauses += 1
        _log.info("actor %s paused: %s during the %s (budget %d)", self.id, pause.reason, message.describe(),
                  pause.gas_budget)
        return TurnOutcome(kind, pause=pause, woke=woke, refill_at=meter.full_at() if pause.reason == "quota" else None)

    def _undo(self, vm: VM, meter: GasMeter, exc: VMUnusable) -> VMUnusable:
        """A metered turn is undone even after a fatal error (out of memory, say): the VM comes back from
        the savepoint in a fresh instance, and only this message fails (for a completion, the caller
        awaiting that chain gets the error)."""
        self.running = False
        meter.rollback(vm)
        self._turn_calls = None
        return exc

    def _lost(self, message: Message, kind: TurnKind, exc: VMUnusable) -> TurnOutcome:
        """The engine discarded an unmetered VM and there is nothing to roll back to: the actor fails."""
        self.running = False
        self.mailbox.popleft()
        if message.reply is not None:
            message.reply.fail(exc)
        return self.fail(exc, kind, message.reply)

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


def _kind_of(message: Message, callers: Callers | None) -> TurnKind:
    """The kind of turn ``message`` makes (before its awaited call is taken from the callers book)."""
    if not message.token:
        return "message"
    call = callers.awaited.get(message.token) if callers is not None else None
    return "timer" if call is not None and call.due is not None else "completion"


def _detached(exc: Exception) -> Exception:
    """A guest error as a plain copy: the proxy in it dies when the VM hibernates or rolls back."""
    if not isinstance(exc, GuestError):
        return exc
    try:
        error = GuestError(plain(exc.value))
        error.__cause__ = exc.__cause__
    except Exception:
        return exc
    return error

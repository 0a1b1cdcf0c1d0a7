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

from ..errors import ActorError, ActorFailed, GasExhausted, GuestError, MicroviumError, VMUnusable
from ..imports import AsyncCall, AsyncImport, Sleep, sleep
from ..vm import VM, GuestPromise, SnapshotLike
from .clock import Clock, from_wall_time, to_wall_time
from .gas import GasMeter, GasPolicy, HostCallRecord, PauseEvent
from .mailbox import NO_MAIL, Message, Reply, plain
from .metrics import ActorMetrics
from .record import ActorRecord

ActorState = Literal["idle", "running", "paused", "hibernated", "failed", "evicted"]
TurnKind = Literal["message", "completion", "timer"]
ImportBinder = Callable[[Mapping[int, Callable[..., Any]], "list[HostCallRecord] | None"],
                        Mapping[int, Callable[..., Any]]]

_log = logging.getLogger("mvactors")

_NO_PROMISES: dict[int, Any] = {}  # read-only by convention: replaced, never mutated, while hibernated


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

    @property
    def completed(self) -> bool:
        return self.pause is None


# Most turns start nothing, wake nothing and fail nothing: one shared outcome each.
_KINDS: tuple[TurnKind, ...] = ("message", "completion", "timer")
_PLAIN = {(kind, failed): TurnOutcome(kind, failed) for kind in _KINDS for failed in (False, True)}


class _Unawaited(Reply):
    """Stands in for the caller of a ``send()`` whose export returned a promise: nobody awaits it,
    so a rejection is reported (log, ``on_error``) instead of dropped."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message


class Cell:
    """One actor's state, advanced one turn at a time by its runtime."""

    # A fleet keeps up to millions of these, most hibernated: no per-instance dict.
    __slots__ = (
        "_awaited",
        "_next_call_id",
        "_promises",
        "_rest",
        "_token_owner",
        "_turn_calls",
        "_turn_host_calls",
        "_unclaimed",
        "_vm_imports",
        "_waiting",
        "clock",
        "evicted",
        "failure",
        "gas",
        "id",
        "imports",
        "last_active",
        "last_failure",
        "mailbox",
        "mailbox_size",
        "meter",
        "metrics",
        "overflow",
        "pause",
        "running",
        "scheduled",
        "space",
        "time_limit",
        "timers",
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
        self._turn_host_calls: list[HostCallRecord] | None = [] if self.meter is not None else None
        self._vm_imports = bind(imports, self._turn_host_calls)
        self.vm: VM | None = None
        self._rest: ActorRecord | None = None  # the VM at rest, while hibernated
        self._promises: dict[int, GuestPromise] = {}  # call id -> guest promise being awaited
        self._waiting: dict[int, Reply] = {}  # call id -> caller waiting on that promise
        # Promises an adopted record kept (call id -> promise) that no caller here has claimed yet.
        self._unclaimed: dict[int, GuestPromise] = _NO_PROMISES
        self._token_owner: dict[int, int] = {}  # async host call token -> call id whose chain awaits it
        self._awaited: dict[int, AsyncCall] = {}  # token -> async host call the guest awaits
        self._turn_calls: list[tuple[int, int, Callable[..., Any], list[Any]]] | None = None
        self._next_call_id = 1
        self.space: anyio.Event | None = None  # set when the mailbox has room again
        self.running = False
        self.scheduled = False  # in the runtime's ready queue
        self.last_active = 0.0  # on the runtime clock, for the residency policy
        self.timers = 0  # timers armed for this cell in the runtime

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

    # ---- life: start, adopt, hibernate, record ----

    def start(self, snapshot: SnapshotLike) -> None:
        """Restore ``snapshot`` as this actor's VM (no guest code runs)."""
        self._attach(VM.restore(snapshot, self._vm_imports, time_limit=self.time_limit))

    def adopt(self, record: ActorRecord) -> list[AsyncCall]:
        """Take over ``record``'s state and wake its VM; returns the awaited calls to start again.

        Promises awaited where the record was made have no caller here: they wait, unwatched,
        for :meth:`reply_for` (until the VM next hibernates or closes).
        """
        calls = []
        for p in record.pending:
            due = None if p.due is None else from_wall_time(self.clock, p.due, record.written_at)
            fn = self.imports.get(p.import_id, sleep if due is not None else None)
            if fn is None:
                raise ActorError(f"actor {self.id!r} awaits host function {p.import_id}, which is not in "
                                 "the import map", "MVA_UNRESOLVED_IMPORT")
            fn = fn.fn if isinstance(fn, AsyncImport) else fn
            calls.append(AsyncCall(self.id, p.token, p.import_id, fn, p.args, due))
        self._rest = record
        self._wake()
        self._unclaimed, self._promises = self._promises, {}
        # Call ids go on from the kept ones: a claimed promise keeps the id it travelled under.
        self._next_call_id = max(self._unclaimed, default=0) + 1
        self.turns = record.turns
        if self.meter is not None and self.gas.quota is not None and record.quota_left is not None:
            self.meter.quota_left = record.quota_left
        for call in calls:
            self._awaited[call.token] = call
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
        self._promises = {int(k): v for k, v in refs.items()}
        self.metrics.rehydrations += 1
        _log.debug("actor %s woke from hibernation", self.id)
        return self._attach(vm)

    def hibernate(self) -> bool:
        """Snapshot the VM and release it (queued mail and a paused turn are kept); False if it cannot now."""
        vm = self.vm
        if vm is None or self.running or self.failure is not None:
            return False
        try:
            hibernation = vm.hibernate(keep=self._promises)
        except MicroviumError:
            return False  # cannot be snapshotted right now: stays resident
        # In memory, the awaited calls stay in _awaited: the record needs only the VM's part.
        self._rest = ActorRecord.from_hibernation(hibernation, {}, None, 0)
        _disown(self._promises)  # the record keeps them; wake() brings them back
        self._promises = self._unclaimed = _NO_PROMISES
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
        if self.vm is not None:
            # Only promises a caller waits on travel; a send()'s rejection is reported by this runtime.
            keep = {k: p for k, p in self._promises.items() if not isinstance(self._waiting.get(k), _Unawaited)}
            hibernation = self.vm.hibernate(keep=keep, collect=collect)
        else:
            assert self._rest is not None
            hibernation = self._rest.hibernation()
        clock, written_at = self.clock, time.time()
        pending = {token: (a.import_id, a.args, None if a.due is None else to_wall_time(clock, a.due, written_at))
                   for token, a in self._awaited.items()}
        return ActorRecord.from_hibernation(hibernation, pending, self.quota_left, self.turns, written_at)

    def awaiting(self) -> dict[int, Reply]:
        """The callers :meth:`record` keeps the promises of, by the key each promise travels under."""
        return {k: r for k, r in self._waiting.items() if k in self._promises and not isinstance(r, _Unawaited)}

    def reply_for(self, key: int) -> Reply:
        """A caller for the promise an adopted record kept under ``key``: answered when it settles."""
        promise = self._unclaimed.get(key)
        if promise is None or self.vm is None:
            raise ActorError(f"actor {self.id!r} holds no unclaimed promise kept under key {key!r} (claim it "
                             "right after adopt, before the actor hibernates)", "MVA_NO_SUCH_PROMISE")
        del self._unclaimed[key]
        reply = Reply()
        self._promises[key] = promise
        self._waiting[key] = reply
        self._settle_waiting()  # it may have settled in a turn that ran before the claim
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

    def deliver(self, token: int, ok: bool, value: Any) -> bool:
        """Queue the completion of async host call ``token``; False when nothing awaits it any more.

        Never refused for capacity: capacity is for senders.
        """
        if self.failure is not None or self.evicted or token not in self._awaited:
            return False
        self.mail().append(Message(token=token, ok=ok, value=value))
        return True

    def withdraw(self, message: Message) -> None:
        """Take back a message whose caller gave up (timeout, cancellation) unless its turn is running."""
        if not (self.running and self.mailbox and self.mailbox[0] is message):
            for queued in self.mailbox:
                if queued is message:
                    self.mailbox.remove(message)  # identity: Message compares by identity
                    self.signal_space()
                    break
        for call_id, reply in list(self._waiting.items()):
            if reply is message.reply:
                del self._waiting[call_id]
                self._promises.pop(call_id, None)

    def signal_space(self) -> None:
        if self.space is not None:
            self.space.set()
            self.space = None

    def close(self, error: Callable[[], BaseException]) -> None:
        """Answer every waiting caller with ``error()`` and release the VM (failure, runtime stopped, eviction)."""
        for message in self.mailbox:
            if message.reply is not None:
                message.reply.fail(error())
        self.mailbox.clear()
        for reply in self._waiting.values():
            reply.fail(error())
        self._waiting.clear()
        _disown(self._promises)
        self._promises.clear()
        self._unclaimed = _NO_PROMISES
        self.signal_space()
        if self.vm is not None:
            self.vm.close()
            self.vm = None

    # ---- gas ----

    def resume(self, extra_gas: int | None) -> None:
        pause = self.pause
        assert pause is not None and self.meter is not None
        self.meter.resume(extra_gas, pause.reason)
        self.pause = None

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
        woke = False
        vm = self.vm
        if vm is None:
            try:
                vm = self._wake()
            except MicroviumError as exc:
                return self.fail(exc, _kind_of(message, self._awaited))
            woke = True
        meter = self.meter
        savepoint = budget = None
        if meter is not None:
            # A turn that runs out is undone: copy the VM's used memory aside (cheap).
            savepoint = vm.savepoint()
            budget = meter.turn_budget()
            vm.stop_after_n_instructions(budget)
            assert self._turn_host_calls is not None
            self._turn_host_calls.clear()
        self._turn_calls = None
        token = message.token
        kind: TurnKind = "message"
        owner = awaited = None
        if token:
            # The call whose awaited chain this completion continues (its caller waits on the result).
            owner = self._token_owner.pop(token, None)
            awaited = self._awaited.pop(token, None)
            kind = "timer" if awaited is not None and awaited.due is not None else "completion"
        self.running = True
        started = time.perf_counter()
        result: Any = None
        error: BaseException | None = None
        try:
            if token:
                vm.resolve_async(token, message.ok, message.value)
            else:
                result = vm.exports[message.export_id](*message.args)
        except GasExhausted:
            self.running = False
            assert savepoint is not None and budget is not None and meter is not None
            vm.rollback(savepoint)
            self._turn_calls = None
            if token:  # it is delivered again on resume
                if awaited is not None:
                    self._awaited[token] = awaited
                if owner is not None:
                    self._token_owner[token] = owner
            reason = meter.pause_reason(budget)
            self.pause = PauseEvent(reason, message.describe(), tuple(self._turn_host_calls or ()), budget)
            self.metrics.pauses += 1
            _log.info("actor %s paused: %s during the %s (budget %d)", self.id, reason, message.describe(), budget)
            return TurnOutcome(kind, pause=self.pause, woke=woke,
                               refill_at=meter.full_at() if reason == "quota" else None)
        except VMUnusable as exc:
            self.running = False
            if savepoint is None:
                # The engine discarded the instance and there is nothing to roll back to.
                self.mailbox.popleft()
                if message.reply is not None:
                    message.reply.fail(exc)
                return self.fail(exc, kind, message.reply)
            # A metered turn is undone even after a fatal error (out of memory, say): the
            # VM comes back from the savepoint in a fresh instance, and only this message
            # fails (for a completion, the caller awaiting that chain gets the error).
            vm.rollback(savepoint)
            self._turn_calls = None
            error = exc
        except GuestError as exc:
            error = exc
            try:
                # A plain copy: the proxy dies when the VM hibernates or rolls back.
                error = GuestError(plain(exc.value))
                error.__cause__ = exc.__cause__
            except Exception:
                pass
        except Exception as exc:
            error = exc
        finally:
            self.running = False
        self.mailbox.popleft()
        self.signal_space()
        metrics = self.metrics
        if meter is not None:
            used = _spent(vm, budget)
            metrics.gas_used += used
            meter.turn_done(used)
        metrics.turns += 1
        self.turns += 1
        if error is not None:
            metrics.failed_turns += 1
            self.last_failure = error
        metrics.record_latency(time.perf_counter() - started)
        reply = message.reply
        unobserved: BaseException | None = None
        described = ""
        if reply is None and error is None and isinstance(result, GuestPromise):
            reply = _Unawaited(message.describe())
        if reply is not None:
            if error is not None:
                reply.fail(error)
            elif isinstance(result, GuestPromise):
                owner = self._next_call_id
                self._next_call_id += 1
                self._promises[owner] = result
                self._waiting[owner] = reply
            else:
                try:
                    reply.resolve(plain(result))
                except Exception as exc:
                    reply.fail(exc)
        elif error is not None and owner is not None:
            # The continuation of an awaited chain failed (a host function raised): its
            # promise can never settle, so its caller gets the error.
            waiting = self._waiting.pop(owner, None)
            self._promises.pop(owner, None)
            if isinstance(waiting, _Unawaited):
                unobserved, described = error, f"{waiting.message}, at the {message.describe()}"
            elif waiting is not None:
                waiting.fail(error)
            else:
                unobserved = error
            owner = None
        elif error is not None:
            unobserved = error
        calls = self._commit_calls(owner) if self._turn_calls else ()
        if self._waiting:
            # A send()'s promise is looked at only when its own chain ran a turn that awaits
            # nothing new (where it can have settled): a fleet's endless loops cost no poll.
            rejected = self._settle_waiting(None if calls else owner)
            if rejected is not None and unobserved is None:
                unobserved, described = rejected[1], f"{rejected[0]} (its promise rejected)"
        if unobserved is not None:
            _log.warning("actor %s: the %s failed and no caller awaits it: %s",
                         self.id, described or message.describe(), unobserved)
        elif error is not None:
            _log.debug("actor %s: the %s failed (its caller gets the error): %s", self.id, message.describe(), error)
        if calls or woke or unobserved is not None or message.reply is not None:
            return TurnOutcome(kind, error is not None, calls, None, None, None, woke, unobserved, message.reply)
        return _PLAIN[kind, error is not None]

    def _commit_calls(self, owner: int | None) -> tuple[AsyncCall, ...]:
        """The async host calls the committed turn made, now awaited; sleeps get their due time."""
        assert self._turn_calls is not None
        calls = []
        now: float | None = None
        for token, import_id, fn, args in self._turn_calls:
            if owner is not None:
                self._token_owner[token] = owner
            copied = tuple(plain(a) for a in args)
            due = None
            if isinstance(fn, Sleep):
                if now is None:
                    now = self.clock.now()
                due = now + fn.delay(copied)
            call = self._awaited[token] = AsyncCall(self.id, token, import_id, fn, copied, due)
            calls.append(call)
        self._turn_calls = None
        return tuple(calls)

    def _settle_waiting(self, chain: int | None = None) -> tuple[str, BaseException] | None:
        """Answer the callers whose promises settled; returns a rejection nobody awaited, if any.

        Of the send()s' promises, only ``chain``'s is looked at.
        """
        vm = self.vm
        if vm is None:
            return None
        unawaited = None
        for call_id, waiting in list(self._waiting.items()):
            if call_id != chain and isinstance(waiting, _Unawaited):
                continue
            promise = self._promises.get(call_id)
            if promise is None:
                continue
            state, value = vm.promise_outcome(promise)
            if state == "pending":
                continue
            reply = self._waiting.pop(call_id)
            del self._promises[call_id]
            if state == "fulfilled":
                try:
                    reply.resolve(plain(value))
                except Exception as exc:
                    reply.fail(exc)
            else:
                error = GuestError(plain(value))
                if isinstance(reply, _Unawaited):
                    self.last_failure = error
                    unawaited = (reply.message, error)
                reply.fail(error)
        return unawaited

    def fail(self, exc: BaseException, kind: TurnKind | None = None, reply: Reply | None = None) -> TurnOutcome:
        """The actor failed for good: every waiting caller gets ActorFailed, the VM is released.

        ``kind``/``reply``: the turn that was running and the caller of the message it applied, if
        it applied one; without ``kind``, the turn of the message at the head of the mailbox.
        """
        if kind is None:
            kind = _kind_of(self.mailbox[0], self._awaited) if self.mailbox else "message"
        self.running = False
        self.failure = self.last_failure = exc
        _log.error("actor %s failed for good: %s", self.id, exc)
        self.close(lambda: ActorFailed(f"actor {self.id} failed: {exc}"))
        self._token_owner.clear()
        return TurnOutcome(kind, True, failure=exc, reply=reply)


def _kind_of(message: Message, awaited: Mapping[int, AsyncCall]) -> TurnKind:
    """The kind of turn ``message`` makes (before its awaited call is taken out of ``awaited``)."""
    if not message.token:
        return "message"
    call = awaited.get(message.token)
    return "timer" if call is not None and call.due is not None else "completion"


def _disown(promises: dict[int, GuestPromise]) -> None:
    """The runtime lets go of promises it watched for callers: no "never awaited" warning for them."""
    for promise in promises.values():
        try:
            promise.state  # noqa: B018 - reading the state is how a holder says it looked
        except MicroviumError:
            pass  # the VM is gone: the promise was looked at all the same


def _spent(vm: VM, budget: int | None) -> int:
    """Instructions a turn used out of ``budget`` (0 when unmetered or unreadable)."""
    if budget is None:
        return 0
    try:
        remaining = vm.get_remaining_instructions()
    except MicroviumError:
        return 0
    return budget - remaining if 0 <= remaining <= budget else 0

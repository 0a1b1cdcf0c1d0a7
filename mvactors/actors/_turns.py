"""How one turn of a :class:`~.cell.Cell` runs: the message at the head of its mailbox (an export
call, an async completion or fired sleep, an upgrade) applied to its VM, and the
:class:`TurnOutcome` that tells the runtime what to do next.  Gas pauses roll the turn back here.

The hot path of every actor: ``run_turn`` → ``_apply_message`` / ``_apply_completion`` →
``_finish``.  Cell inherits these; the cell's state is declared below, set by Cell.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Literal, NamedTuple

import anyio

from ..errors import (
    GasExhausted,
    GuestError,
    MicroviumError,
    UpgradeFailed,
    VMUnusable,
)
from ..imports import AsyncCall
from ..vm import VM, GuestPromise
from ._callers import Callers, TurnCalls, Unawaited
from .clock import Clock
from .gas import GasMeter, PauseEvent
from .mailbox import Message, Reply, plain
from .metrics import ActorMetrics
from .record import ActorRecord

_log = logging.getLogger("mvactors")

TurnKind = Literal["message", "completion", "timer"]


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


class Turns:
    """The turn half of :class:`~.cell.Cell` (a base class: the cell's state is declared here, set by Cell)."""

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
    id: str
    time_limit: float | None
    clock: Clock
    meter: GasMeter | None
    mailbox: deque[Message]
    metrics: ActorMetrics
    pause: PauseEvent | None
    failure: BaseException | None
    last_failure: BaseException | None
    turns: int
    vm: VM | None
    running: bool
    _vm_imports: Mapping[int, Callable[..., Any]]
    _callers: Callers | None
    _turn_calls: TurnCalls | None
    _space: anyio.Event | None

    # (the cell's side, which a turn uses)
    def fail(self, exc: BaseException, kind: TurnKind | None = None, reply: Reply | None = None) -> TurnOutcome:
        raise NotImplementedError

    def record(self, collect: bool | None = True) -> ActorRecord:
        raise NotImplementedError

    def _book(self) -> Callers:
        raise NotImplementedError

    def _wake(self) -> VM:
        raise NotImplementedError

    def _attach(self, vm: VM) -> VM:
        raise NotImplementedError

    def _made_room(self) -> None:
        raise NotImplementedError

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

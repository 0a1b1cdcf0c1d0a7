"""``Callers``: which caller each awaited guest promise answers, and which async host call each chain awaits.

A cell allocates one only when a turn first leaves something to wait for (an export
returned a promise, an async host call was made, a record was adopted): most actors of a
fleet never do, and hold ``None`` instead of five dicts (~5 x 64 B each).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import GuestError, MicroviumError
from ..imports import AsyncCall, Sleep
from ..vm import VM, GuestPromise
from .clock import Clock, to_wall_time
from .mailbox import Reply, plain

# What a turn's async host calls are until it commits: (token, import ID, function, guest arguments).
TurnCalls = list[tuple[int, int, Callable[..., Any], list[Any]]]

NO_PROMISES: dict[int, Any] = {}  # read-only by convention: replaced, never mutated, while hibernated


class Unawaited(Reply):
    """Stands in for the caller of a ``send()`` whose export returned a promise: nobody awaits it,
    so a rejection is reported (log, ``on_error``) instead of dropped."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message


class Callers:
    """The book of one cell's awaited promises and awaited async host calls.

    Keys: a *call id* names a promise an export returned (and the caller it answers); it is
    also the key the promise travels under in a record.  A *token* names an async host call.
    """

    __slots__ = ("awaited", "next_call_id", "owner", "promises", "unclaimed", "waiting")

    def __init__(self) -> None:
        self.promises: dict[int, GuestPromise] = {}  # call id -> guest promise being awaited
        self.waiting: dict[int, Reply] = {}  # call id -> caller waiting on that promise
        # Promises an adopted record kept (call id -> promise) that no caller here has claimed yet.
        self.unclaimed: dict[int, GuestPromise] = NO_PROMISES
        self.owner: dict[int, int] = {}  # async host call token -> call id whose chain awaits it
        self.awaited: dict[int, AsyncCall] = {}  # token -> async host call the guest awaits
        self.next_call_id = 1

    # ---- promises and their callers ----

    def wait_on(self, promise: GuestPromise, reply: Reply) -> int:
        """``reply`` is answered when ``promise`` settles; returns the call id both go under."""
        call_id = self.next_call_id
        self.next_call_id += 1
        self.promises[call_id] = promise
        self.waiting[call_id] = reply
        return call_id

    def claim(self, key: int) -> Reply | None:
        """A caller for the unclaimed promise kept under ``key`` (None if there is none)."""
        promise = self.unclaimed.get(key)
        if promise is None:
            return None
        del self.unclaimed[key]
        reply = Reply()
        self.promises[key] = promise
        self.waiting[key] = reply
        return reply

    def awaiting(self) -> dict[int, Reply]:
        """Callers whose promises a record keeps (a send()'s rejection is reported where it ran)."""
        return {k: r for k, r in self.waiting.items() if k in self.promises and not isinstance(r, Unawaited)}

    def kept(self) -> dict[int, GuestPromise]:
        """The promises a record keeps: those a caller waits on."""
        return {k: p for k, p in self.promises.items() if not isinstance(self.waiting.get(k), Unawaited)}

    def withdraw(self, reply: Reply | None) -> None:
        """Forget the promises ``reply`` waited on (its caller gave up)."""
        for call_id, waiting in list(self.waiting.items()):
            if waiting is reply:
                del self.waiting[call_id]
                self.promises.pop(call_id, None)

    def drop(self, call_id: int) -> Reply | None:
        """Forget the promise of ``call_id`` (its chain failed outside the guest: it can never settle);
        returns the caller that waited on it, if any."""
        self.promises.pop(call_id, None)
        return self.waiting.pop(call_id, None)

    def settle(self, vm: VM, chain: int | None) -> tuple[str, BaseException] | None:
        """Answer the callers whose promises settled; returns a rejection nobody awaited, if any.

        Of the send()s' promises, only ``chain``'s is looked at.
        """
        unawaited = None
        for call_id, waiting in list(self.waiting.items()):
            if call_id != chain and isinstance(waiting, Unawaited):
                continue
            promise = self.promises.get(call_id)
            if promise is None:
                continue
            state, value = vm.promise_outcome(promise)
            if state == "pending":
                continue
            reply = self.waiting.pop(call_id)
            del self.promises[call_id]
            if state == "fulfilled":
                try:
                    reply.resolve(plain(value))
                except Exception as exc:
                    reply.fail(exc)
            else:
                error = GuestError(plain(value))
                if isinstance(reply, Unawaited):
                    unawaited = (reply.message, error)
                reply.fail(error)
        return unawaited

    # ---- async host calls ----

    def take(self, token: int) -> tuple[int | None, AsyncCall | None]:
        """The completion of ``token`` is being applied: the chain it continues, and the call itself."""
        return self.owner.pop(token, None), self.awaited.pop(token, None)

    def put_back(self, token: int, owner: int | None, awaited: AsyncCall | None) -> None:
        """The completion's turn was rolled back: it is delivered again on resume."""
        if awaited is not None:
            self.awaited[token] = awaited
        if owner is not None:
            self.owner[token] = owner

    def expect(self, call: AsyncCall, owner: int | None) -> None:
        """The guest awaits ``call``; its completion continues the chain ``owner`` (if a caller waits on it)."""
        if owner is not None:
            self.owner[call.token] = owner
        self.awaited[call.token] = call

    def commit(self, actor_id: str, clock: Clock, turn_calls: TurnCalls, chain: int | None) -> tuple[AsyncCall, ...]:
        """The async host calls a committed turn made (on ``chain``), now awaited; sleeps get their due time."""
        calls = []
        now: float | None = None
        for token, import_id, fn, args in turn_calls:
            copied = tuple(plain(a) for a in args)
            due = None
            if isinstance(fn, Sleep):
                if now is None:
                    now = clock.now()
                due = now + fn.delay(copied)
            call = AsyncCall(actor_id, token, import_id, fn, copied, due)
            self.expect(call, chain)
            calls.append(call)
        return tuple(calls)

    def pending(self, clock: Clock, written_at: float) -> dict[int, tuple[int, tuple[Any, ...], float | None]]:
        """The awaited calls as a record keeps them: token -> (import ID, arguments, wall-clock due time)."""
        return {token: (a.import_id, a.args, None if a.due is None else to_wall_time(clock, a.due, written_at))
                for token, a in self.awaited.items()}

    # ---- the VM coming and going ----

    def rested(self) -> None:
        """The VM hibernated: its record keeps the promises (they come back with :meth:`woke`)."""
        disown(self.promises)
        self.promises = self.unclaimed = NO_PROMISES

    def woke(self, refs: dict[int, GuestPromise]) -> None:
        self.promises = refs

    def adopted(self) -> None:
        """The promises the VM woke with belong to callers elsewhere: unclaimed until :meth:`claim`."""
        self.unclaimed, self.promises = self.promises, {}
        # Call ids go on from the kept ones: a claimed promise keeps the id it travelled under.
        self.next_call_id = max(self.unclaimed, default=0) + 1

    def close(self, error: Callable[[], BaseException]) -> None:
        """Every waiting caller gets ``error()``; the promises are let go."""
        for reply in self.waiting.values():
            reply.fail(error())
        self.waiting.clear()
        disown(self.promises)
        self.promises.clear()  # a no-op on the shared NO_PROMISES (hibernated): it stays empty
        self.unclaimed = NO_PROMISES
        self.owner.clear()


def disown(promises: dict[int, GuestPromise]) -> None:
    """The runtime lets go of promises it watched for callers: no "never awaited" warning for them."""
    for promise in promises.values():
        try:
            promise.state  # noqa: B018 - reading the state is how a holder says it looked
        except MicroviumError:
            pass  # the VM is gone: the promise was looked at all the same

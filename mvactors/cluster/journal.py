"""The journal: results of ``journaled`` host calls recorded in Redis before the guest sees them.

A replay (after a crash or a migration) gets the recorded result and ``fn`` is not called
again; a replay that asks for a different call at the same token is a non-determinism
error that fails the actor.  ``fn`` runs only once the turn that made the call is committed:
until then a crash replays that turn from an older record, where the same token can go to
another call (completions and timers need not interleave with the replayed messages as
they did the first time), so a journal entry is only ever written for a committed call.
Other async host calls run as usual (re-issued on adoption: at least once).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ..actors import Actor, AsyncCall, HostCalls
from ..imports import Journaled
from .store import pack, unpack

# (actor, call, entry) -> the entry Redis holds for that token after the write (ours or an earlier one),
# or None when this worker may no longer write for the actor.
JournalWrite = Callable[[Actor, AsyncCall, bytes], Awaitable[bytes | None]]
# (actor, token) -> the recorded entry, if any
JournalRead = Callable[[Actor, int], bytes | None]
# (actor, reason): fail the actor for good (it leaves the runtime at once)
FailActor = Callable[[Actor, str], None]
# (actor, call) -> once the turn that made the call is committed: True, or False if the worker lost the actor
Issued = Callable[[Actor, AsyncCall], Awaitable[bool]]


def entry_for(call: AsyncCall, ok: bool, value: Any) -> bytes:
    """A journal entry: import ID, the packed arguments, and the outcome."""
    try:
        return pack([call.import_id, pack(list(call.args)), ok, value])
    except TypeError as exc:
        # The outcome cannot be stored: the guest gets (and a replay repeats) a rejection saying so.
        return pack([call.import_id, pack(list(call.args)), False, f"journaled result not storable: {exc}"])


def _matches(call: AsyncCall, entry: bytes) -> tuple[bool, Any, str | None]:
    try:
        import_id, packed_args, ok, value = unpack(entry)
        unpack(packed_args)
    except Exception as exc:  # bytes in Redis that no worker wrote: this actor cannot go on
        return False, None, (f"corrupt journal entry for call {call.key} in Redis "
                             f"({type(exc).__name__}{': ' if str(exc) else ''}{exc})")
    if import_id != call.import_id or packed_args != pack(list(call.args)):
        recorded = f"host function {import_id} with {unpack(packed_args)!r}"
        wanted = f"host function {call.import_id} with {list(call.args)!r}"
        return False, None, (f"non-determinism at journaled call {call.key}: the journal recorded {recorded}, "
                             f"the replay asked for {wanted}")
    return ok, value, None


class JournalHostCalls(HostCalls):
    """HostCalls that journal the ``mvactors.journaled`` imports of a worker's actors."""

    def __init__(self, read: JournalRead, write: JournalWrite, fail: FailActor,
                 after_write: Callable[[], None], issued: Issued) -> None:
        self._read, self._write, self._fail, self._after_write = read, write, fail, after_write
        self._issued = issued

    async def run(self, actor: Actor, call: AsyncCall) -> tuple[bool, Any]:
        if not isinstance(call.fn, Journaled):
            return await super().run(actor, call)
        entry = self._read(actor, call.token)
        if entry is None:
            if not await self._issued(actor, call):
                return False, "this worker lost the actor"
            try:
                ok, value = await super().run(actor, call)
            except Exception as exc:  # a host function bug: the guest's promise rejects, as in a Runtime
                ok, value = False, f"{type(exc).__name__}: {exc}"
            entry = await self._write(actor, call, entry_for(call, ok, value))
            if entry is None:  # this worker lost the actor (evicted it): the outcome goes nowhere
                return False, "this worker lost the actor"
            self._after_write()
        ok, value, mismatch = _matches(call, entry)
        if mismatch is not None:
            self._fail(actor, mismatch)  # evicts it: the outcome below goes nowhere
            return False, mismatch
        return ok, value

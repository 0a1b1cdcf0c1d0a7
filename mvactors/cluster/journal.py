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

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio

from ..actors import Actor, AsyncCall, HostCalls
from ..imports import Journaled
from .crash import crash_point
from .link import BACKOFF_MAX, BACKOFF_MIN, OUT_OF_MEMORY, RedisLink
from .owned import Owned
from .wire import JournalReply, journal_args, pack, unpack

log = logging.getLogger("mvactors")

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
                 after_write: Callable[[], None], issued: Issued,
                 observe: Callable[[Actor, AsyncCall, bool, Any], None] | None = None) -> None:
        self._read, self._write, self._fail, self._after_write = read, write, fail, after_write
        self._issued = issued
        self._observe = observe

    async def run(self, actor: Actor, call: AsyncCall) -> tuple[bool, Any]:
        ok, value = await self._run(actor, call)
        if self._observe is not None:  # (history: the completion turn this outcome becomes records it)
            self._observe(actor, call, ok, value)
        return ok, value

    async def _run(self, actor: Actor, call: AsyncCall) -> tuple[bool, Any]:
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


class RedisJournal:
    """The journal's side in Redis for one worker: entries read from what the acquire returned,
    written with ``mva_journal`` under the actor's lease (fenced by its epoch).

    ``held`` is the worker's owned set; ``drop(owned, why)`` forgets an actor whose lease may be
    gone, ``fail(actor, why)`` fails one for good.  :meth:`host_calls` makes the runtime's HostCalls.
    """

    def __init__(self, link: RedisLink, worker_id: str, held: Mapping[str, Owned], lease_safe: float,
                 drop: Callable[[Owned, str], None], fail: FailActor) -> None:
        self.link = link
        self.worker_id = worker_id
        self._held = held
        self._lease_safe = lease_safe
        self._drop = drop
        self._fail = fail

    def host_calls(self, observe: Callable[[Actor, AsyncCall, bool, Any], None] | None = None) -> JournalHostCalls:
        """HostCalls for the worker's runtime, journaling through this journal; ``observe(actor, call, ok, value)``
        sees each async call's outcome just before the actor gets it."""
        return JournalHostCalls(self.read, self.write, self._fail, lambda: crash_point("after-journal"), self.issued,
                                observe)

    def _ours(self, actor: Actor) -> Owned | None:
        owned = self._held.get(actor.id)
        # (owned.actor is None while adopt() re-issues the calls the record awaits)
        if owned is None or owned.gone or owned.actor not in (None, actor):
            return None
        return owned

    def read(self, actor: Actor, token: int) -> bytes | None:
        """The entry recorded for ``token``, if any (as the acquire found the journal, plus our writes)."""
        owned = self._held.get(actor.id)
        return None if owned is None else owned.journal.get(token)

    async def issued(self, actor: Actor, call: AsyncCall) -> bool:
        """Wait until the turn that made ``call`` is committed; False if this worker lost the actor."""
        owned = self._ours(actor)
        if owned is None:
            return False
        # (a handed-over actor leaves the owned set before its last commit lands, and is no longer ours)
        return await owned.issued(call.token) and self._held.get(actor.id) is owned

    async def write(self, actor: Actor, call: AsyncCall, entry: bytes) -> bytes | None:
        """Record ``entry`` for ``call``; the entry Redis holds after (ours or an earlier one), or None."""
        owned = self._ours(actor)
        if owned is None:
            return None
        crash_point("before-journal")
        args = journal_args(owned.keys, self.worker_id, owned.epoch, call.token, entry)
        while True:
            if not owned.lease.fresh(self._lease_safe):
                self._drop(owned, "its lease may have lapsed while journaling")
                return None
            try:
                # (one attempt per round: the lease is looked at again before each)
                reply = JournalReply.decode(await self.link.redis.fcall("mva_journal", *args))  # type: ignore[misc]
                break
            except self.link.retried as exc:  # unreachable, or full (OOM): the write is safe to repeat
                log.warning("worker %s: Redis unreachable or full while journaling %s (%s)", self.worker_id,
                            call.key, exc)
                # A full Redis stays full for a while: one attempt (and line) a second, not twenty.
                await anyio.sleep(BACKOFF_MAX if isinstance(exc, OUT_OF_MEMORY) else BACKOFF_MIN)
        if reply.status == "OK":
            owned.journal[call.token] = entry
            return entry
        if reply.status == "DUP" and reply.entry is not None:
            owned.journal[call.token] = reply.entry
            return reply.entry
        self._drop(owned, f"its journal write was refused ({reply.status})")
        return None

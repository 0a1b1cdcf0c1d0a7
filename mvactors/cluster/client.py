"""``mvactors.connect(url)``: spawn, message and inspect actors stored in Redis, from any process.

With ``replica_acks=N`` (N >= 1) each spawn, send, describe and operation (pause, resume, retry,
cancel, delete, fork, reset, upgrade) runs on one connection to the master serving the actor's
partition, followed by a write that always replicates and ``WAIT N``
(:meth:`RedisLink.acked`): it returns only once N replicas hold the message (and, for describe,
everything it read), so a failover to one of them keeps it.  A WAIT that times out raises
:class:`NotReplicated`: send again with the same ``message_id``; the repeat is recognised.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from ..vm import SnapshotLike
from ..vm.snapshot import snapshot_bytes
from . import inventory
from .errors import ActorExistsInRedis
from .history import Kept, entries, replay
from .keys import ActorKeys
from .messaging import DEDUPE_WINDOW_MS
from .operations import Operations
from .wire import (
    REPLY_CANCELLED,
    message_payload,
    pack,
    text,
)


class Client(Operations):
    """A connection to the actors stored in one Redis (or Redis Cluster). Use ``mvactors.connect(url)``."""

    # ---- inventory ----

    async def actors(self, state: str | None = None, imports: str | None = None, owner: str | None = None,
                     code: str | None = None, *, limit: int | None = None,
                     after: str | None = None) -> AsyncIterator[dict[str, Any]]:
        """Every stored actor matching the filters, as :meth:`describe` dicts plus ``"id"``, streamed in ID
        order (by the IDs' UTF-8 bytes).

        ``state`` is "idle", "running", "paused" or "failed" (None: any); "failed" and "paused"
        read their own indexes, so finding a few among many costs a few reads.  ``imports``,
        ``owner`` (a worker ID) and ``code`` (a digest, or a prefix of one) narrow it further.

        ``limit`` stops after that many actors and sizes the reads to it: the first 50 of 100,000
        cost one pipeline of ID reads and one of about 50 describes (None: all of them, read 8,192
        at a time).  ``after`` starts after that actor ID (it need not exist any more), so a page
        resumes where the last one's last ID left off: paging by ``after=`` visits every actor
        stored throughout exactly once.  Actors spawned or deleted meanwhile may or may not appear.
        ValueError names a bad argument (raised when iteration starts).
        """
        async for info in inventory.actors(self.link, state, imports, owner, code, limit=limit, after=after):
            yield info

    async def counts(self) -> dict[str, int]:
        """How many actors are stored, failed and paused: ``{"total", "failed", "paused"}``, read from
        the indexes (one pipeline of 128 small reads, whatever the number of actors).

        ``paused`` leaves out paused actors that have also failed (:meth:`describe` says "failed" for
        them).  Idle and running are not indexed (who holds an actor is only in its lease key):
        together they are ``total - failed - paused``; :meth:`workers` says how many each worker holds.
        """
        return await inventory.counts(self.link)

    async def workers(self) -> list[dict[str, Any]]:
        """The live workers: ``[{"id", "host", "pid", "actors", "turns", "started", "seen"}]``.

        ``actors`` held and ``turns`` run are as of the worker's last heartbeat (every quarter
        lease); ``started`` and ``seen`` (its last heartbeat) are unix seconds on Redis's clock.
        """
        return await inventory.workers(self.link)

    # ---- history, replay, fork, reset (issue 16) ----

    async def history(self, actor_id: str) -> AsyncIterator[dict[str, Any]]:
        """The kept turns of an actor spawned with ``history=K``, oldest first (at most K): ``{"turn", "at",
        "kind": "message" | "completion" | "timer", "export", "args", "message_id", "result" | "error",
        "host_calls": [{"import", "args", "result"}]}``.  Async host calls appear with their ``token`` (and
        ``due`` for sleeps); the completion turn that receives one has ``token``, ``ok`` and ``value``."""
        for entry in (await self._kept(actor_id)).entries:
            yield entry

    async def _kept(self, actor_id: str) -> Kept:
        keys = ActorKeys.of(actor_id)
        link = self.link

        def reads(pipe: Any) -> None:
            pipe.hmget(keys.state, "t", "h")
            pipe.get(keys.history_base)
            pipe.lrange(keys.history, 0, -1)
            pipe.lrange(keys.history_records, 0, -1)

        # (one transaction-free pipeline: a commit between the reads is caught by the turn count below)
        for _ in range(10):
            (turns, cap), base, raw, records = await link.guarded(lambda: link.pipeline_once(reads))
            if turns is None:
                raise self._not_found(actor_id)
            kept = Kept(int(turns), int(cap or 0), None if base is None else bytes(base), entries(raw),
                        [bytes(r) for r in records])
            if len(kept.entries) == len(kept.records) and (
                    not kept.entries or kept.entries[-1]["turn"] == kept.turns):
                return kept
        raise RuntimeError(f"actor {actor_id!r} kept committing while its history was read; try again")

    async def replay(self, actor_id: str, snapshot: SnapshotLike | None = None) -> dict[str, Any]:
        """Run the actor's kept history again in this process, with no side effects: every host call is
        answered from the history.  On the actor's own code (from the state before the oldest kept turn),
        or on ``snapshot`` (from that snapshot's own state: the check to run before an upgrade).

        Returns ``{"turns": n, "diverged": None | {"turn", "expected", "got"}}``: the first turn whose
        result, host calls or (on its own code) resulting state differs.  ValueError when it keeps no history.
        """
        kept = await self._kept(actor_id)
        if kept.base is None:
            raise kept.range_error(actor_id, 0)
        return await replay(kept, None if snapshot is None else snapshot_bytes(snapshot))

    async def fork(self, source_id: str, /, turn: int, actor_id: str | None = None) -> str:
        """A new actor (ID ``actor_id``, or a new one) in the state ``source_id`` had after ``turn``: same
        imports, gas, code and history cap, an empty mailbox, the history up to ``turn``; returns its ID.
        ValueError names the kept range when ``turn`` is outside it; ActorExistsInRedis for a taken ID."""
        _check_turn(turn)
        new_id = uuid.uuid4().hex if actor_id is None else actor_id
        if not isinstance(new_id, str) or not new_id:
            raise TypeError("actor_id must be a non-empty str")
        src, dst = ActorKeys.of(source_id), ActorKeys.of(new_id)
        # The new actor may hash to another slot: its one write (mva_fork_into) takes what this client
        # read of the old one's kept window (consistent: checked against its committed turn count).
        kept = await self._kept(source_id)
        if kept.base is None or not kept.first <= turn <= kept.turns:
            raise kept.range_error(source_id, turn)
        info = await self._describe(src)
        if info is None:
            raise self._not_found(source_id)
        upto = turn - kept.first
        record = kept.base if upto == 0 else kept.records[upto - 1]
        gas = await self.link.guarded(lambda: self.redis.hget(src.state, "g"))
        raw = await self._write(dst.tag, "mva_fork_into", [
            6, dst.state, dst.record, dst.history, dst.history_records, dst.history_base, dst.all,
            new_id, turn, uuid.uuid4().hex, record, kept.base, info.imports, gas or b"", info.code, kept.cap,
            upto, *[pack(e) for e in kept.entries[:upto]], *kept.records[:upto]])
        if text(raw[0]) == "EXISTS":
            raise ActorExistsInRedis(f"an actor with ID {new_id!r} already exists")
        return new_id

    async def reset(self, actor_id: str, turn: int, reapply: bool = False) -> None:
        """Take the actor back to its state after ``turn`` (the worker running it loses it at once).

        ``reapply=False`` drops the messages applied after ``turn``; ``True`` queues them again, in their
        order, ahead of the mail waiting (their callers were answered already: they run as sends).  The
        history after ``turn`` is dropped.  ValueError names the kept range when ``turn`` is outside it.

        A caller still waiting for an async export's promise (its message ran after ``turn``, the promise
        had not settled) is answered by the re-run of its message with ``reapply=True``, and with
        :class:`mvactors.Cancelled` without: the state that would have settled it is gone."""
        _check_turn(turn)
        keys = ActorKeys.of(actor_id)
        for _ in range(10):
            kept = await self._kept(actor_id)
            if kept.base is None or not kept.first <= turn <= kept.turns:
                raise kept.range_error(actor_id, turn)
            # Read with the history; mva_reset refuses (MOVED) if it changed since, like the turn count.
            settling = text(await self.link.guarded(lambda: self.redis.hget(keys.state, "s")) or b"")
            waiting = {reply_key for _, reply_key in (json.loads(settling) if settling else ())
                       if not reply_key.startswith("!")}  # ("!": a send's failure report, not a caller)
            requeue: list[Any] = []
            if reapply:
                for entry in kept.entries[turn - kept.first:]:
                    if entry["kind"] == "message":
                        wanted = keys.reply(entry["message_id"]) in waiting
                        waiting.discard(keys.reply(entry["message_id"]))
                        requeue += [entry["message_id"], message_payload(entry["export"], entry["args"], wanted)]
            dropped = pack([REPLY_CANCELLED, f"actor {actor_id} was reset to turn {turn} before this call's "
                                             "promise settled; send it again if it should run"])
            raw = await self._write(keys.tag, "mva_reset", [
                10 + len(waiting), keys.state, keys.lease, keys.mailbox, keys.record, keys.journal, keys.history,
                keys.history_records, keys.history_base, keys.work, keys.ready, *sorted(waiting),
                actor_id, turn, kept.turns, uuid.uuid4().hex, settling, dropped, *requeue])
            status = text(raw[0])
            if status == "UNKNOWN":
                raise self._not_found(actor_id)
            if status == "RANGE":
                raise kept.range_error(actor_id, turn)
            if status == "OK":
                await self._hint(actor_id)
                return
            # MOVED: a turn committed since the history was read; read it again
        raise RuntimeError(f"actor {actor_id!r} kept running turns during reset; pause it first, then reset")



def _check_turn(turn: int) -> None:
    if not isinstance(turn, int) or isinstance(turn, bool) or turn < 0:
        raise ValueError(f"turn must be a non-negative int, not {turn!r}")


def connect(url: str, replica_acks: int = 0, dedupe_window_ms: int = DEDUPE_WINDOW_MS) -> Client:
    """A client for the actors in Redis at ``url`` (``redis://...`` or ``redis+cluster://...``).

    Entering it refuses a Redis that may evict keys (:class:`EvictionPolicyRefused`).
    ``replica_acks``: spawn, send and describe return only once that many replicas of the
    actor's master hold the write (``WAIT``; 0: once the master has it).  ``dedupe_window_ms``:
    how long a ``message_id`` is remembered (see :meth:`Client.send`).

    >>> async with mvactors.connect("redis://127.0.0.1:6379/0") as client:
    ...     actor_id = await client.spawn(snapshot, imports="counter")
    ...     print(await client.call(actor_id, 1, "hello"))
    """
    return Client(url, replica_acks=replica_acks, dedupe_window_ms=dedupe_window_ms)


__all__ = ["Client", "connect"]

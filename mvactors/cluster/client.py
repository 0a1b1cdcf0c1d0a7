"""``mvactors.connect(url)``: spawn, message and inspect actors stored in Redis, from any process.

With ``replica_acks=N`` (N >= 1) each spawn, send, describe and operation (pause, resume, retry,
cancel, delete, fork, reset, upgrade) runs on one connection to the master serving the actor's
partition, followed by a write that always replicates and ``WAIT N``
(:meth:`RedisLink.acked`): it returns only once N replicas hold the message (and, for describe,
everything it read), so a failover to one of them keeps it.  A WAIT that times out raises
:class:`NotReplicated`: send again with the same ``message_id``; the repeat is recognised.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio

from ..actors import ActorRecord, GasPolicy
from ..errors import Cancelled, GuestError, UpgradeFailed
from ..vm import SnapshotLike
from ..vm.snapshot import check_size, snapshot_bytes
from . import inventory
from .deployment import check_deployment
from .errors import (
    ActorExistsInRedis,
    ActorFailedInRedis,
    ActorNotFound,
    NotReplicated,
    RedisOutOfMemory,
    RedisUnreachable,
)
from .history import FRESH, Kept, entries, replay
from .keys import (
    HINT_FREE,
    ActorKeys,
    hint_key,
)
from .link import Redis, RedisLink
from .upgrade import check_migrate, new_record
from .wire import (
    REPLY_CANCELLED,
    REPLY_GUEST_ERROR,
    REPLY_OK,
    REPLY_UNSENDABLE,
    UPGRADE_BARRIER,
    Described,
    ReplyPayload,
    SendReply,
    delete_args,
    encode_gas,
    message_payload,
    pack,
    spawn_args,
    spawned,
    stored_record,
    text,
)

_WAIT_SLICE_MS = 1000  # a call's blocking read returns this often to see whether the actor failed
DEDUPE_WINDOW_MS = 24 * 3600 * 1000  # default: a message_id sent again within a day is not applied twice


class Client:
    """A connection to the actors stored in one Redis (or Redis Cluster). Use ``mvactors.connect(url)``."""

    def __init__(self, url: str, replica_acks: int = 0, dedupe_window_ms: int = DEDUPE_WINDOW_MS) -> None:
        if not isinstance(replica_acks, int) or isinstance(replica_acks, bool) or replica_acks < 0:
            raise ValueError(f"replica_acks must be an int >= 0, not {replica_acks!r}")
        if not isinstance(dedupe_window_ms, int) or isinstance(dedupe_window_ms, bool) or dedupe_window_ms < 1000:
            raise ValueError(f"dedupe_window_ms must be an int of at least 1000, not {dedupe_window_ms!r}")
        self.url = url
        self.replica_acks = replica_acks
        self.dedupe_window_ms = dedupe_window_ms
        self._link: RedisLink | None = None

    async def __aenter__(self) -> Client:
        # Every waiting call holds a blocking connection: up to 1,000 at once.
        self._link = RedisLink(self.url, blocking_timeout=_WAIT_SLICE_MS / 1000 + 10, blocking_connections=1000,
                               replica_acks=self.replica_acks)
        try:
            link = self._link
            # Eviction only: what a redis-server crash loses is the workers' to warn about.
            await link.guarded(lambda: check_deployment(link.redis, warn_persistence=False))
            await link.load_functions()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections (also done by ``async with``)."""
        if self._link is not None:
            await self._link.aclose()
        self._link = None

    @property
    def link(self) -> RedisLink:
        if self._link is None:
            raise RuntimeError("the client is not connected; use `async with mvactors.connect(url) as client:`")
        return self._link

    @property
    def redis(self) -> Redis:
        """The connection pool for plain requests (for tools and tests)."""
        return self.link.redis

    async def _fcall(self, name: str, keys: list[str], args: list[Any]) -> Any:
        return await self.link.fcall(name, [len(keys), *keys, *args])

    async def _acked_fcall(self, tag: str, name: str, keys: list[str], args: list[Any]) -> Any:
        """``FCALL`` that returns once ``replica_acks`` replicas hold what it wrote and read (one attempt)."""
        if not self.replica_acks:
            return await self._fcall(name, keys, args)
        link = self.link

        async def once() -> Any:
            [result] = await link.acked(tag, lambda pipe: pipe.fcall(name, len(keys), *keys, *args))
            if isinstance(result, Exception):
                raise result
            return result
        return await link.guarded(once)

    async def _write(self, tag: str, name: str, flat: list[Any]) -> Any:
        """An operation's ``FCALL`` (``flat``: numkeys, keys..., arguments...) on partition ``tag``: with
        ``replica_acks``, it returns once that many replicas hold it, like a send.  One attempt: after
        :class:`NotReplicated` the operation ran on the master, and ``describe()`` (which waits for the
        replicas too) tells whether it holds once they catch up."""
        return await self._acked_fcall(tag, name, flat[1:1 + flat[0]], flat[1 + flat[0]:])

    async def _describe(self, keys: ActorKeys) -> Described | None:
        return Described.decode(await self._acked_fcall(keys.tag, "mva_describe",
                                                        [keys.state, keys.lease, keys.mailbox], []))

    # ---- the contract ----

    async def spawn(self, snapshot: SnapshotLike, imports: str | None = None, actor_id: str | None = None,
                    gas: GasPolicy | None = None, history: int = 0) -> str:
        """Store a new actor (no guest code runs until its first message); returns its ID.

        ``snapshot`` is anything :meth:`VM.restore` takes: bytes, or a snapshot file's path.

        ``imports`` names an import table every worker has (``None``: no imports).
        ``history`` keeps the last K turns (see :meth:`history`); 0 keeps none.
        An ``actor_id`` that is already stored raises ActorExistsInRedis.
        """
        if imports is not None and not isinstance(imports, str):
            raise TypeError(f"imports= names a worker import table (a str), not {type(imports).__name__}")
        if not isinstance(history, int) or isinstance(history, bool) or history < 0:
            raise ValueError(f"history must be a non-negative int (turns to keep), not {history!r}")
        if actor_id is None:
            actor_id = uuid.uuid4().hex
        elif not isinstance(actor_id, str) or not actor_id:
            raise TypeError("actor_id must be a non-empty str")
        data = snapshot_bytes(snapshot)  # what VM.restore takes: bytes, ints or a file's path
        check_size(data)  # the rest is checked by the worker's restore, which fails the actor saying why
        keys = ActorKeys.of(actor_id)
        code = hashlib.sha256(data).hexdigest()
        flat = spawn_args(keys, data, imports or "", encode_gas(gas), code, history)
        result = await self._acked_fcall(keys.tag, "mva_spawn", flat[1:1 + flat[0]], flat[1 + flat[0]:])
        if not spawned(result):
            raise ActorExistsInRedis(f"an actor with ID {actor_id!r} already exists")
        return actor_id

    async def send(self, actor_id: str, export_id: int, *args: Any, message_id: str | None = None) -> str:
        """Append a message to the actor's mailbox; returns once Redis has it durably (its message ID).

        Sending again with the same ``message_id`` within the client's ``dedupe_window_ms`` (24 h
        by default; counted from when Redis first accepted it) does not apply it twice; once the
        window has passed it may be applied again (IDs older than the window are forgotten at the
        actor's next accepted send).  With ``replica_acks=N`` it returns once N replicas hold it.

        Raises ActorNotFound, ActorFailedInRedis, RedisOutOfMemory (Redis is full: nothing was
        written), NotReplicated (fewer than N replicas confirmed in time: send again with the same
        ``message_id``) or RedisUnreachable (it may or may not have been accepted: send again with
        the same ``message_id``).
        """
        return await self._send(actor_id, export_id, args, message_id, reply=False)

    async def call(self, actor_id: str, export_id: int, *args: Any, timeout: float | None = None,
                   message_id: str | None = None) -> Any:
        """Send a message and wait for the turn's result (a copied Python value).

        Raises GuestError when the guest throws, TimeoutError after ``timeout`` seconds,
        ActorFailedInRedis when the actor fails, RedisUnreachable when Redis does not answer.
        """
        if timeout is not None and (not isinstance(timeout, (int, float)) or timeout < 0 or math.isnan(timeout)):
            raise ValueError(f"timeout must be a non-negative number of seconds or None, not {timeout!r}")
        deadline = None if timeout is None else time.monotonic() + timeout
        message_id = await self._send(actor_id, export_id, args, message_id, reply=True)
        keys = ActorKeys.of(actor_id)
        reply_key = keys.reply(message_id)
        link = self.link
        while True:
            block = _WAIT_SLICE_MS
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"actor {actor_id!r} did not answer message {message_id} within {timeout}s")
                block = max(1, min(block, int(left * 1000)))
            read = functools.partial(link.blocking.xread, {reply_key: "0-0"}, count=1, block=block)
            got: Any = await link.guarded(read)
            if got:
                entries = got[0][1] if isinstance(got, list) else next(iter(got.values()))[0]
                await link.guarded(lambda: link.redis.delete(reply_key))
                return self._result(actor_id, ReplyPayload.decode(entries[0][1][b"v"]))
            info = await self._describe(keys)
            if info is None:
                raise ActorNotFound(f"actor {actor_id!r} was deleted before it answered")
            if info.failed:
                raise ActorFailedInRedis(actor_id, info.failed)

    @staticmethod
    def _result(actor_id: str, reply: ReplyPayload) -> Any:
        status, value = reply
        if status == REPLY_OK:
            return value
        if status == REPLY_GUEST_ERROR:
            raise GuestError(value)
        if status == REPLY_CANCELLED:
            raise Cancelled(f"actor {actor_id!r}: {value}")
        if status == REPLY_UNSENDABLE:
            raise TypeError(f"actor {actor_id!r} returned a value that cannot cross processes: {value}")
        raise ActorFailedInRedis(actor_id, str(value))

    async def _send(self, actor_id: str, export_id: int, args: tuple[Any, ...], message_id: str | None,
                    reply: bool) -> str:
        if not isinstance(export_id, int) or isinstance(export_id, bool):
            raise TypeError(f"export_id must be an int, not {type(export_id).__name__}")
        if message_id is None:
            message_id = uuid.uuid4().hex
        elif not isinstance(message_id, str) or not message_id:
            raise TypeError("message_id must be a non-empty str")
        payload = message_payload(export_id, args, reply)  # TypeError for unsupported arguments, before Redis
        keys = ActorKeys.of(actor_id)
        try:
            result = await self._acked_fcall(keys.tag, "mva_send", [keys.state, keys.lease, keys.mailbox, keys.dedupe,
                                                                    keys.work, keys.ready],
                                             [actor_id, message_id, payload, self.dedupe_window_ms])
        except NotReplicated as exc:
            raise NotReplicated(f"message {message_id} to actor {actor_id!r}: {exc}", message_id) from exc
        sent = SendReply.decode(result)
        if sent.status == "UNKNOWN":
            raise ActorNotFound(f"no actor {actor_id!r} in Redis at {self.url}")
        if sent.status == "FAILED":
            raise ActorFailedInRedis(actor_id, sent.reason)
        # A wake-up hint only: workers also find the mail by polling the work index.
        hint = hint_key(sent.owner) if sent.owner else HINT_FREE
        redis = self.redis
        try:
            await self.link.guarded(lambda: redis.xadd(hint, {"a": actor_id}, maxlen=64, approximate=True))
        except (RedisOutOfMemory, RedisUnreachable):
            pass  # the message is in; the workers' scan of the work index finds it without the hint
        return message_id

    async def describe(self, actor_id: str) -> dict[str, Any]:
        """The actor as Redis has it.

        ``owner`` (worker ID or None), ``turns`` committed, ``mailbox`` (messages not yet applied),
        ``imports``, ``failed`` (reason or None), ``epoch`` (fencing token), ``state`` ("idle",
        "running", "paused" or "failed"), ``paused`` (None or {"reason": "gas" | "operator",
        "since": unix seconds, "detail": str}), ``code`` (hex SHA-256 of the snapshot it runs),
        ``history`` (turns kept) and ``last_failure`` (None or {"at", "message_id", "export",
        "error", "awaited"}: the last turn that failed, awaited or not).
        """
        info = await self._describe(ActorKeys.of(actor_id))
        if info is None:
            raise ActorNotFound(f"no actor {actor_id!r} in Redis at {self.url}")
        return info.public()

    async def delete(self, actor_id: str) -> None:
        """Remove the actor, its mailbox and journal; a worker running it drops it at its next commit."""
        keys = ActorKeys.of(actor_id)
        found = await self._write(keys.tag, "mva_delete", delete_args(keys))
        if not int(found):
            raise ActorNotFound(f"no actor {actor_id!r} in Redis at {self.url}")

    # ---- repair: pause, resume, retry, cancel, snapshot ----

    def _not_found(self, actor_id: str) -> ActorNotFound:
        return ActorNotFound(f"no actor {actor_id!r} in Redis at {self.url}")

    async def pause(self, actor_id: str, detail: str = "") -> None:
        """Run no more turns of the actor until :meth:`resume`; mail is still accepted.

        Durable (the pause is in Redis) and idempotent.  A worker running the actor loses it at
        once (its epoch moves on); turns it had not committed run again after the resume.
        ``detail`` is kept in ``describe()["paused"]``.  A failed actor cannot be paused (ValueError).
        """
        keys = ActorKeys.of(actor_id)
        raw = await self._write(keys.tag, "mva_pause", [5, keys.state, keys.lease, keys.work, keys.ready, keys.paused,
                                                  actor_id, detail])
        status = text(raw[0])
        if status == "UNKNOWN":
            raise self._not_found(actor_id)
        if status == "FAILED":
            raise ValueError(f"actor {actor_id!r} has failed ({text(raw[1])}); repair it with retry(), not pause()")

    async def resume(self, actor_id: str, extra_gas: int | None = None) -> None:
        """End an operator pause or a gas pause.  After a gas pause the rolled-back turn runs again, with
        ``extra_gas`` instructions (as ``Actor.resume`` gives); its caller, still waiting, gets the result.
        ValueError when the actor is not paused."""
        if extra_gas is not None and (
                not isinstance(extra_gas, int) or isinstance(extra_gas, bool) or not 0 < extra_gas <= 0x7FFFFFFF):
            raise ValueError(f"extra_gas must be a positive int below 2**31, got {extra_gas!r}")
        keys = ActorKeys.of(actor_id)
        raw = await self._write(keys.tag, "mva_resume", [3, keys.state, keys.work, keys.paused, actor_id,
                                                   uuid.uuid4().hex, "" if extra_gas is None else extra_gas])
        status = text(raw[0])
        if status == "UNKNOWN":
            raise self._not_found(actor_id)
        if status == "NOT_PAUSED":
            raise ValueError(f"actor {actor_id!r} is not paused; nothing to resume")
        await self._hint(actor_id)

    async def retry(self, actor_id: str) -> None:
        """Repair a failed actor: the failure is cleared and it goes back to its last committed record;
        the turn that failed runs again (fix its cause first).  ValueError when it has not failed."""
        keys = ActorKeys.of(actor_id)
        raw = await self._write(keys.tag, "mva_retry", [5, keys.state, keys.lease, keys.work, keys.ready, keys.failed,
                                                  actor_id, uuid.uuid4().hex])
        status = text(raw[0])
        if status == "UNKNOWN":
            raise self._not_found(actor_id)
        if status == "NOT_FAILED":
            raise ValueError(f"actor {actor_id!r} has not failed; nothing to retry")
        await self._hint(actor_id)

    async def cancel(self, actor_id: str, message_id: str) -> bool:
        """Drop message ``message_id`` if it has not run: True (its caller gets :class:`mvactors.Cancelled`),
        False when it was already applied.  The message a gas pause holds at the head of the mailbox can be
        dropped too; the actor then goes on with the next.  ValueError for a message never sent."""
        if not isinstance(message_id, str) or not message_id:
            raise TypeError("message_id must be a non-empty str")
        keys = ActorKeys.of(actor_id)
        payload = pack([REPLY_CANCELLED, f"message {message_id} was cancelled before it ran"])
        raw = await self._write(keys.tag, "mva_cancel", [
            8, keys.state, keys.lease, keys.mailbox, keys.dedupe, keys.work, keys.ready, keys.paused,
            keys.reply(message_id), actor_id, message_id, payload])
        status = text(raw[0])
        if status == "UNKNOWN":
            raise self._not_found(actor_id)
        if status == "NOT_SENT":
            raise ValueError(f"actor {actor_id!r} has no message {message_id!r} (never sent, or sent over a day ago)")
        if status == "OK":
            await self._hint(actor_id)
        return status == "OK"

    async def snapshot(self, actor_id: str) -> bytes:
        """The actor's last committed state as a plain snapshot (``VM.restore`` and ``mvactors info`` open it),
        to debug it locally.  Awaited host calls are not part of a plain snapshot."""
        keys = ActorKeys.of(actor_id)
        link = self.link

        def reads(pipe: Any) -> None:
            pipe.hget(keys.state, "f")
            pipe.get(keys.record)
            pipe.exists(keys.state)

        fresh, saved, exists = await link.guarded(lambda: link.pipeline_once(reads))
        if not exists or saved is None:
            raise self._not_found(actor_id)
        if fresh:
            return bytes(saved)
        return ActorRecord.decode(stored_record(bytes(saved))).snapshot

    async def _hint(self, actor_id: str) -> None:
        """Wake the workers waiting for actors with no owner (they also find it by scanning)."""
        redis = self.redis
        await self.link.guarded(lambda: redis.xadd(HINT_FREE, {"a": actor_id}, maxlen=64, approximate=True))

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

    # ---- upgrade (issue 16) ----

    async def upgrade(self, actor_id: str, snapshot: SnapshotLike, migrate: tuple[int, int] | None = None,
                      timeout: float | None = None) -> None:
        """Deploy new code to a running actor, in mailbox order: mail sent before runs on the old code,
        mail sent after on the new.

        It is applied at a turn boundary with no host call or timer pending, waiting up to ``timeout``
        seconds (None: as long as it takes) for them.  With ``migrate=(OUT, IN)``, export OUT on the
        old code returns a plain value (copied), then the new snapshot is restored and export IN(value)
        runs on it; without, the new snapshot's own state replaces the old.  Atomic: on any failure the
        actor keeps its old code and state and :class:`mvactors.UpgradeFailed` says why.  One fenced
        write; ``describe()["code"]`` changes and history (if kept) records an "upgrade" turn.
        A worker must be running the actor's import table to reach the turn boundary.
        """
        if migrate is not None and (not isinstance(migrate, tuple) or len(migrate) != 2
                                    or not all(isinstance(x, int) and not isinstance(x, bool) for x in migrate)):
            raise TypeError(f"migrate must be (OUT, IN): two export IDs, not {migrate!r}")
        if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
            raise ValueError(f"timeout must be a positive number of seconds or None, not {timeout!r}")
        data = snapshot_bytes(snapshot)
        check_size(data)
        keys = ActorKeys.of(actor_id)
        old, old_snapshot = await self._current(actor_id)
        check_migrate(old_snapshot, data, migrate)  # a missing export fails before anything changes
        if (await self._describe(keys) or self._gone(actor_id)).failed:
            raise UpgradeFailed(f"actor {actor_id!r} has failed; repair it with retry() before upgrading it")
        message_id = await self._send(actor_id, UPGRADE_BARRIER, (), None, False)
        request = uuid.uuid4().hex
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        delay = 0.01
        while True:  # until the worker that reaches the barrier hands the actor back paused for it
            info = await self._describe(keys) or self._gone(actor_id)
            paused = json.loads(info.paused) if info.paused else None
            if paused and paused.get("reason") == "upgrade" and paused.get("message_id") == message_id:
                break
            if info.failed:
                raise UpgradeFailed(f"actor {actor_id!r} failed before the upgrade was reached: {info.failed}")
            if time.monotonic() >= deadline:
                await self._upgrade_write(keys, "", message_id, request, "ABORT", b"", "", b"")
                raise UpgradeFailed(f"actor {actor_id!r} was not at a turn boundary with nothing pending within "
                                    f"{timeout} s: {await self._pending_named(actor_id, info)}; the upgrade was "
                                    "withdrawn (try again with a longer timeout)")
            await anyio.sleep(delay)  # (polling: the pause is written by the worker's releasing commit)
            delay = min(delay * 2, 0.2)
        old, old_snapshot = await self._current(actor_id)  # the state at the barrier
        try:
            record = await new_record(old, old_snapshot, data, migrate, FRESH)
        except UpgradeFailed:
            await self._upgrade_write(keys, str(info.epoch), message_id, request, "FAIL", b"", "", b"")
            raise
        code = hashlib.sha256(data).hexdigest()
        entry = b""
        if info.history:
            entry = pack({"turn": info.turns + 1, "at": round(time.time(), 3), "kind": "upgrade", "export": None,
                          "args": None if migrate is None else list(migrate), "message_id": message_id,
                          "result": code, "host_calls": []})
        status = await self._upgrade_write(keys, str(info.epoch), message_id, request, "OK", record, code, entry)
        if status != "OK":
            raise UpgradeFailed(f"actor {actor_id!r} changed while the upgrade was made ({status}); it keeps its "
                                "old code: try again")
        await self._hint(actor_id)

    def _gone(self, actor_id: str) -> Described:
        raise self._not_found(actor_id)

    async def _current(self, actor_id: str) -> tuple[ActorRecord | None, bytes]:
        """The actor's committed state: (record, its snapshot), or (None, the spawned snapshot)."""
        keys = ActorKeys.of(actor_id)
        link = self.link

        def reads(pipe: Any) -> None:
            pipe.hget(keys.state, "f")
            pipe.get(keys.record)

        fresh, saved = await link.guarded(lambda: link.pipeline_once(reads))
        if saved is None:
            raise self._not_found(actor_id)
        if fresh:
            return None, bytes(saved)
        record = ActorRecord.decode(stored_record(bytes(saved)))
        return record, record.snapshot

    async def _pending_named(self, actor_id: str, info: Described) -> str:
        record, _ = await self._current(actor_id)
        if (record is None or not record.pending) and not info.owner:
            # Nobody leased it in all that time: the likeliest cause is that no worker serves its table.
            return (f"no worker took it up (is a worker running import table {info.imports!r}? "
                    "`mvactors workers` lists the live ones)")
        if record is None or not record.pending:
            return "its earlier mail had not all run"
        now = time.time()
        return ", ".join(f"host function {p.import_id} (call {p.token}) pending" if p.due is None else
                         f"a timer (call {p.token}) due in {max(0.0, p.due - now):.1f} s" for p in record.pending)

    async def _upgrade_write(self, keys: ActorKeys, epoch: str, message_id: str, request: str, outcome: str,
                             record: bytes, code: str, entry: bytes) -> str:
        raw = await self._write(keys.tag, "mva_upgrade", [
            11, keys.state, keys.lease, keys.mailbox, keys.record, keys.journal, keys.history, keys.history_records,
            keys.history_base, keys.work, keys.ready, keys.paused,
            keys.actor_id, epoch, message_id, request, outcome, record, code, entry])
        return text(raw[0])


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

"""``mvactors.Worker``: a process that runs actors stored in Redis, turn by fenced turn.

The worker leases actors (``mva_acquire``: SET NX PX plus a fencing epoch), adopts their
records into a local :class:`~mvactors.actors.Runtime`, feeds them their mailbox stream,
and commits each turn's record, stream position and replies in one ``mva_commit`` that
checks the epoch; the commits of many actors go out in one pipeline (group commit).
Callers see a turn's reply only once it is committed.  A worker that cannot renew a
lease in time drops the actor (and its unsaved turns) before anyone else may take it.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import anyio
import anyio.abc

from ..actors import Actor, ActorRecord, GasPolicy, Reply, Runtime, TurnOutcome
from ..errors import ActorError, EngineExhausted, GuestError
from ..imports import AsyncCall, Journaled
from ..vm import load_engine
from .client import REPLY_FAILED, REPLY_GUEST_ERROR, REPLY_OK, REPLY_UNSENDABLE, decode_gas
from .crash import crash_point
from .errors import RedisUnreachable
from .journal import JournalHostCalls
from .owned import Mail, Owned
from .store import (
    HINT_FREE,
    PARTITIONS,
    UNREACHABLE,
    ActorKeys,
    CommitEntry,
    Redis,
    commit_args,
    fetch_args,
    fetched,
    hint_key,
    load_functions,
    open_redis,
    pack,
    partition_tag,
    storable_record,
    stored_record,
    text,
    unpack,
)

log = logging.getLogger("mvactors")
T = TypeVar("T")

ImportTables = Mapping[str, Mapping[int, Callable[..., Any]]]

WORKERS = "mva:{workers}"  # zset: worker ID -> time of its last heartbeat
_POLL_INTERVAL = 0.1  # seconds between full scans of the work index (hints wake it sooner)
_HINT_BLOCK_MS = 1000
_FETCH_COUNT = 256
_ACQUIRE_PER_SCAN = 1024  # actors acquired per scan at most (one pipeline)
_CANDIDATES_PER_PARTITION = 256
_BACKOFF_MIN, _BACKOFF_MAX = 0.05, 1.0


class Worker:
    """Runs the actors stored in Redis at ``url`` (``redis://`` or ``redis+cluster://``).

    ``imports`` maps import-table names (an actor's ``spawn(imports=...)``) to import maps;
    every worker should have the same tables.  ``max_actors`` caps the actors held at once,
    ``lease_ms`` is the lease TTL (a crashed worker's actors move after it), and
    ``checkpoint_every`` commits every N turns (and when an actor goes quiet or moves);
    turns since the last commit are replayed from the mailbox after a crash.

    >>> async with mvactors.Worker(url, IMPORTS) as worker:
    ...     await worker.wait_closed()
    """

    def __init__(self, url: str, imports: ImportTables, worker_id: str | None = None,
                 max_actors: int | None = None, lease_ms: int = 2000, checkpoint_every: int = 1) -> None:
        if not isinstance(imports, Mapping) or not all(
                isinstance(k, str) and isinstance(v, Mapping) for k, v in imports.items()):
            raise TypeError("imports must map import-table names (str) to import maps ({id: function})")
        if worker_id is None:
            worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        if not isinstance(worker_id, str) or not worker_id or "|" in worker_id:
            raise ValueError(f"worker_id must be a non-empty str without '|', not {worker_id!r}")
        if max_actors is not None and (not isinstance(max_actors, int) or max_actors < 1):
            raise ValueError(f"max_actors must be a positive int or None, not {max_actors!r}")
        if not isinstance(lease_ms, int) or lease_ms < 100:
            raise ValueError(f"lease_ms must be an int of at least 100, not {lease_ms!r}")
        if not isinstance(checkpoint_every, int) or checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be a positive int, not {checkpoint_every!r}")
        self.url = url
        self.imports = imports
        self.worker_id = worker_id
        self.max_actors = max_actors
        self.lease_ms = lease_ms
        self.checkpoint_every = checkpoint_every
        # Stop committing this long after a lease was last renewed (Redis TTLs are not monotonic).
        self._lease_safe = lease_ms / 1000 * 0.8
        self._owned: dict[str, Owned] = {}
        self._acquiring: set[str] = set()
        self._want_acquire: set[str] = set()
        self._want_fetch: set[Owned] = set()
        self._dirty: set[Owned] = set()
        self._wake = anyio.Event()
        self._commit_wake = anyio.Event()
        self._closed = anyio.Event()
        self._closing = False
        self._redis: Redis | None = None
        self._blocking: Redis | None = None
        self._runtime: Runtime | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._failures: list[tuple[Owned, str]] = []
        self._peers = 1  # live workers on this Redis, from their heartbeats
        self._clock_offset = 0.0  # Redis's clock minus this machine's wall clock, in seconds (see _redis_time)
        self.stats = {"acquired": 0, "released": 0, "dropped": 0, "commits": 0, "turns": 0, "committed_turns": 0,
                      "failed": 0}

    # ---- lifecycle ----

    async def __aenter__(self) -> Worker:
        # A missing or stale engine build is this worker's fault, not the actors': refuse to
        # start instead of failing every actor it would adopt.
        load_engine()
        self._redis = open_redis(self.url)
        self._blocking = open_redis(self.url, socket_timeout=_HINT_BLOCK_MS / 1000 + 10)
        try:
            await self._guard(lambda: load_functions(self.redis))
            await self._guard(self._heartbeat)
            self._runtime = Runtime(host_calls=JournalHostCalls(self._journal_read, self._journal_write,
                                                                self._fail_now, lambda: crash_point("after-journal"),
                                                                self._journal_issued),
                                    on_turn=self._on_turn)
            await self._runtime.__aenter__()
            self._tg = anyio.create_task_group()
            await self._tg.__aenter__()
        except BaseException:
            await self._close_connections()
            raise
        for loop in (self._discover_loop, self._hint_loop, self._renew_loop, self._commit_loop):
            self._tg.start_soon(loop)
        log.info("worker %s started on %s", self.worker_id, self.url)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close(graceful=True)
        # Task groups are left by the task that entered them: here, not in close().
        if self._tg is not None:
            self._tg.cancel_scope.cancel()
            await self._tg.__aexit__(None, None, None)
            self._tg = None
        if self._runtime is not None:
            await self._runtime.__aexit__(None, None, None)
            self._runtime = None
        with anyio.CancelScope(shield=True):
            await self._close_connections()
        log.info("worker %s closed (%s)", self.worker_id, self.stats)

    async def wait_closed(self) -> None:
        """Return once the worker has closed (``close()``, or its ``async with`` ended)."""
        await self._closed.wait()

    async def close(self, graceful: bool = True) -> None:
        """Stop taking work.  ``graceful``: commit what ran and hand every actor back to Redis at
        once (other workers pick them up without waiting for the lease to lapse); else just stop
        (the leases lapse).  The ``async with`` block then ends the worker's tasks."""
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        try:
            if graceful and self._redis is not None and self._runtime is not None:
                with anyio.CancelScope(shield=True), anyio.move_on_after(max(2.0, self.lease_ms / 1000)):
                    await self._hand_over_all()
        finally:
            self._closed.set()

    async def _close_connections(self) -> None:
        for client in (self._redis, self._blocking):
            if client is not None:
                try:
                    await client.aclose()
                except Exception:  # closing a dead connection: nothing to save
                    pass
        self._redis = self._blocking = None

    @property
    def redis(self) -> Redis:
        assert self._redis is not None
        return self._redis

    @property
    def runtime(self) -> Runtime:
        assert self._runtime is not None
        return self._runtime

    @property
    def actors(self) -> list[str]:
        """IDs of the actors this worker holds now."""
        return list(self._owned)

    # ---- Redis access with retries ----

    async def _guard(self, action: Callable[[], Awaitable[T]]) -> T:
        try:
            return await action()
        except UNREACHABLE as exc:
            raise RedisUnreachable(f"Redis at {self.url} is unreachable: {exc}") from exc

    async def _retrying(self, what: str, action: Callable[[], Awaitable[T]]) -> T:
        """Run ``action`` until Redis answers, backing off and logging while it does not."""
        delay = _BACKOFF_MIN
        failures = 0
        while True:
            try:
                return await action()
            except UNREACHABLE as exc:
                failures += 1
                if failures == 1 or failures % 20 == 0:
                    log.warning("worker %s: Redis unreachable while %s (%s); retrying", self.worker_id, what, exc)
            await anyio.sleep(delay * (0.5 + random.random()))
            delay = min(_BACKOFF_MAX, delay * 2)

    async def _pipeline(self, what: str, build: Callable[[Any], None]) -> list[Any]:
        """Build and run a pipeline until Redis answers (redis-py empties a pipeline when it fails)."""
        async def attempt() -> list[Any]:
            pipe = self.redis.pipeline(transaction=False)
            build(pipe)
            return await pipe.execute(raise_on_error=False)  # type: ignore[no-any-return]
        return await self._retrying(what, attempt)

    # ---- turns ----

    def _on_turn(self, actor: Actor, outcome: TurnOutcome) -> None:
        owned = self._owned.get(actor.id)
        # (owned.actor is None while adopt() yields: a completion of a call it re-issued can run then)
        if owned is None or owned.actor not in (None, actor):
            return
        owned.turns += 1
        self.stats["turns"] += 1
        crash_point("after-turn")
        if any(isinstance(call.fn, Journaled) for call in outcome.calls):
            owned.journal_due = True  # the call waits for this turn's commit: make it soon
        if outcome.kind == "message" and owned.running:
            mail, reply = owned.running.popleft()
            owned.applied_pos = mail.stream_id
            if mail.wants_reply:
                owned.settling.append((owned.keys.reply(mail.message_id), reply))
        self._collect_settled(owned)
        if outcome.failure is not None:
            self._fail_now(actor, f"{type(outcome.failure).__name__}: {outcome.failure}")
            return
        self._dirty.add(owned)
        self._commit_wake.set()

    @staticmethod
    def _collect_settled(owned: Owned) -> None:
        """Move the replies of async exports that settled (in a later turn than their call) to the next commit."""
        if owned.settling:
            still = []
            for key, reply in owned.settling:
                if reply.done:
                    owned.replies.append((key, _reply_payload(reply)))
                else:
                    still.append((key, reply))
            owned.settling = still

    def _feed(self, owned: Owned) -> None:
        """Submit buffered mail within the checkpoint budget; ask for more when the buffer is empty."""
        if owned.gone or owned.actor is None or self._closing:
            return
        room = self.checkpoint_every - owned.uncommitted - len(owned.running)
        while room > 0 and owned.buffer:
            mail = owned.buffer.popleft()
            owned.running.append((mail, owned.actor.submit(mail.export_id, *mail.args)))
            room -= 1
        if not owned.buffer and owned.more_mail:
            self._want_fetch.add(owned)
            self._wake.set()
        owned.quiet_since = None

    # ---- discovery: hints, the work index, acquiring ----

    async def _hint_loop(self) -> None:
        blocking = self._blocking
        assert blocking is not None
        mine = hint_key(self.worker_id)
        last = {mine: "$", HINT_FREE: "$"}
        delay = _BACKOFF_MIN
        while True:
            try:
                got: Any = await blocking.xread(dict(last), count=1000, block=_HINT_BLOCK_MS)  # type: ignore[arg-type]
                delay = _BACKOFF_MIN
            except UNREACHABLE:
                await anyio.sleep(delay)
                delay = min(_BACKOFF_MAX, delay * 2)
                continue
            streams = got.items() if isinstance(got, dict) else got or []
            for key, entries in streams:
                key = text(key)
                entries = entries[0] if isinstance(got, dict) else entries
                for entry_id, fields in entries:
                    last[key] = text(entry_id)
                    actor_id = text(fields.get(b"a", b""))
                    owned = self._owned.get(actor_id)
                    if owned is not None:
                        owned.more_mail = True
                        self._want_fetch.add(owned)
                    elif key == HINT_FREE:
                        self._want_acquire.add(actor_id)
            self._wake.set()

    async def _discover_loop(self) -> None:
        next_scan = 0.0
        while not self._closing:
            now = time.monotonic()
            if now >= next_scan:
                more = await self._retrying("scanning for work", self._scan)
                next_scan = time.monotonic() + (0.0 if more else _POLL_INTERVAL)
            if self._want_acquire:
                wanted, self._want_acquire = self._want_acquire, set()
                await self._acquire(list(wanted))
            if self._want_fetch:
                await self._fetch()
            self._release_quiet()
            if not self._want_acquire and not self._want_fetch:
                with anyio.move_on_after(max(0.0, next_scan - time.monotonic())):
                    await self._wake.wait()
                self._wake = anyio.Event()

    async def _scan(self) -> bool:
        """One pass over every partition: new mail at owned actors, and actors that need an owner.

        True when there may be more to acquire right away (a partition filled its batch)."""
        now_ms = int(self._redis_time() * 1000)
        room = self._room()
        tags = [partition_tag(i) for i in range(PARTITIONS)]
        random.shuffle(tags)  # workers scanning at once start at different partitions
        pipe = self.redis.pipeline(transaction=False)
        for tag in tags:
            pipe.fcall("mva_take_ready", 1, f"{tag}:ready", self.worker_id, _FETCH_COUNT)
            if room > 0:
                pipe.zrangebyscore(f"{tag}:work", "-inf", now_ms, start=0, num=_CANDIDATES_PER_PARTITION)
        results = await pipe.execute()
        candidates: list[str] = []
        full = False
        step = 2 if room > 0 else 1
        for i in range(0, len(results), step):
            for actor_id in results[i]:
                owned = self._owned.get(text(actor_id))
                if owned is not None:
                    owned.more_mail = True
                    self._want_fetch.add(owned)
            if room > 0:
                full = full or len(results[i + 1]) == _CANDIDATES_PER_PARTITION
                candidates.extend(text(a) for a in results[i + 1] if text(a) not in self._owned)
        if candidates:
            random.shuffle(candidates)
            # Take a fair share: the other live workers scan too (the rest is left for the next scan).
            share = -(-len(candidates) // max(1, self._peers))
            await self._acquire(candidates[:max(min(room, share), 0)])
        return full or len(candidates) > room

    def _room(self) -> int:
        if self.max_actors is None:
            return _ACQUIRE_PER_SCAN
        return min(_ACQUIRE_PER_SCAN, self.max_actors - len(self._owned) - len(self._acquiring))

    async def _acquire(self, actor_ids: list[str]) -> None:
        if self._closing:
            return
        actor_ids = [a for a in actor_ids if a not in self._owned and a not in self._acquiring][:max(self._room(), 0)]
        if not actor_ids:
            return
        self._acquiring.update(actor_ids)
        try:
            sent = time.monotonic()
            pipe = self.redis.pipeline(transaction=False)
            for actor_id in actor_ids:
                keys = ActorKeys.of(actor_id)
                pipe.fcall("mva_acquire", 6, keys.state, keys.lease, keys.journal, keys.work, keys.ready,
                           keys.record, actor_id, self.worker_id, self.lease_ms)
            try:
                results = await pipe.execute(raise_on_error=False)
            except UNREACHABLE as exc:
                log.warning("worker %s: Redis unreachable while acquiring (%s)", self.worker_id, exc)
                return
            for actor_id, result in zip(actor_ids, results, strict=True):
                if isinstance(result, Exception):
                    log.warning("worker %s: acquiring %s failed: %s", self.worker_id, actor_id, result)
                    continue
                if text(result[0]) == "OK":
                    await self._adopt(actor_id, result, sent)
        finally:
            self._acquiring.difference_update(actor_ids)

    async def _adopt(self, actor_id: str, result: list[Any], sent: float) -> None:
        epoch, saved, fresh, turns, pos, imports_name, gas_bytes = (result[1], result[2], result[3], result[4],
                                                                    result[5], result[6], result[7])
        keys = ActorKeys.of(actor_id)
        try:
            settling, journal_raw, name = text(result[8]), result[9:], text(imports_name)
            owned = Owned(actor_id, keys, text(epoch), sent, int(turns), text(pos),
                          {int(journal_raw[i]): journal_raw[i + 1] for i in range(0, len(journal_raw), 2)})
        except (ValueError, TypeError, IndexError) as exc:  # (UnicodeDecodeError is a ValueError)
            reason = f"its state in Redis ({keys.state}, {keys.journal}) is corrupt: {type(exc).__name__}: {exc}"
            log.error("worker %s: actor %s fails: %s", self.worker_id, actor_id, reason)
            await self._fail_in_redis(Owned(actor_id, keys, text(epoch), sent, 0, "0-0", {}), reason)
            return
        owned.turns, owned.applied_pos, owned.read_pos = owned.committed_turns, owned.committed_pos, owned.committed_pos
        self._owned[actor_id] = owned
        self.stats["acquired"] += 1
        try:
            if name and name not in self.imports:
                raise LookupError(f"no worker import table named {name!r} (this worker has: "
                                  f"{', '.join(sorted(self.imports)) or 'none'})")
            imports = self.imports.get(name, {}) if name else {}
            record = (ActorRecord(snapshot=bytes(saved)) if text(fresh) == "1"
                      else ActorRecord.decode(stored_record(saved)))
            owned.committed_next_token = record.next_token  # the calls it awaits may run (again) at once
            gas: GasPolicy | None = decode_gas(gas_bytes)
            owned.actor = await self.runtime.adopt(record, actor_id, imports, gas)
            if owned.gone:  # dropped while adopt() yielded (its lease lapsed): nothing may stay behind
                self._evict(owned)
                return
            self._claim_replies(owned, owned.actor, settling)
            # Turns that ran before adopt() returned (see _on_turn) may have settled a claimed promise.
            self._collect_settled(owned)
            if owned.replies or owned.uncommitted:
                self._dirty.add(owned)
                self._commit_wake.set()
        except EngineExhausted as exc:
            # This process holds as many VMs as the kernel allows: the actor is sound and
            # this worker is full.  Its lease lapses and a worker with room takes it.
            self._drop(owned, str(exc))
            self.max_actors = max(1, len(self._owned))
            log.warning("worker %s now holds at most %d actors", self.worker_id, self.max_actors)
            return
        except Exception as exc:
            self._owned.pop(actor_id, None)
            owned.gone = True
            log.error("worker %s: actor %s cannot run here and fails: %s", self.worker_id, actor_id, exc)
            await self._fail_in_redis(owned, f"{type(exc).__name__}: {exc}")
            return
        owned.at_rest_with(record.pending)
        self._feed(owned)

    def _claim_replies(self, owned: Owned, actor: Actor, settling: str) -> None:
        """Wait again on the async exports the record's promises will answer: their callers still
        read the reply keys, and the commit of the turn that settles one writes its reply."""
        for ref, reply_key in json.loads(settling) if settling else ():
            try:
                owned.settling.append((reply_key, actor.reply_for(ref)))
            except ActorError as exc:  # a record and its settling list are committed together
                log.error("worker %s: actor %s: the reply %s cannot be answered: %s",
                          self.worker_id, owned.actor_id, reply_key, exc)

    async def _fetch(self) -> None:
        batch = [o for o in self._want_fetch if not o.gone and not o.buffer]
        self._want_fetch.clear()
        if not batch:
            return
        by_partition = _by_partition(batch)
        pipe = self.redis.pipeline(transaction=False)
        for members in by_partition.values():
            pipe.fcall("mva_fetch", *fetch_args([(o.keys.mailbox, o.read_pos) for o in members], _FETCH_COUNT))
        try:
            results = await pipe.execute()
        except UNREACHABLE as exc:
            log.warning("worker %s: Redis unreachable while reading mail (%s)", self.worker_id, exc)
            self._want_fetch.update(batch)
            await anyio.sleep(_BACKOFF_MIN)
            return
        for members, blob in zip(by_partition.values(), results, strict=True):
            for owned, entries in zip(members, fetched(blob), strict=True):
                if owned.gone:
                    continue
                for stream_id, message_id, payload in entries:
                    export_id, args, wants_reply = unpack(payload)
                    owned.buffer.append(Mail(stream_id, message_id, export_id, args, wants_reply))
                    owned.read_pos = stream_id
                owned.more_mail = len(entries) == _FETCH_COUNT
                self._feed(owned)

    # ---- commits ----

    async def _commit_loop(self) -> None:
        while True:
            await self._commit_wake.wait()
            self._commit_wake = anyio.Event()
            while self._dirty or self._failures:
                if self._failures:
                    failures, self._failures = self._failures, []
                    for owned, reason in failures:
                        self._evict(owned)
                        await self._fail_in_redis(owned, reason)
                batch = [o for o in self._dirty if self._due_for_commit(o)]
                self._dirty.difference_update(batch)
                if not batch:
                    break
                await self._commit(batch)

    def _due_for_commit(self, owned: Owned) -> bool:
        if owned.gone or owned.committing or owned.uncommitted == 0 or owned.actor is None:
            return False  # (None: adopt() has not returned; it marks the actor dirty when it does)
        return (owned.uncommitted >= self.checkpoint_every or owned.journal_due
                or (not owned.running and not owned.buffer))

    def _lease_fresh(self, owned: Owned) -> bool:
        return time.monotonic() - owned.lease_ok_at < self._lease_safe

    async def _commit(self, batch: list[Owned], release: bool = False,
                      records: Mapping[Owned, tuple[ActorRecord, str]] | None = None) -> None:
        """Commit each actor's state now (or ``records``: record, settling) in one pipeline; ``release`` also
        gives up the lease."""
        work = []
        for owned in batch:
            if not self._lease_fresh(owned):
                self._drop(owned, "its lease may have lapsed (not renewed in time)")
                continue
            if records is not None:
                record, settling = records[owned]
            else:
                assert owned.actor is not None
                # Garbage is collected only when it pays (a forced collection is most of a record's cost);
                # the releasing commit stores a collected record (evict() makes one).
                record, settling = owned.actor.record(collect=None), _settling_refs(owned, owned.actor)
            work.append((owned, record, owned.turns, owned.applied_pos, owned.replies, settling))
            owned.replies = []
            owned.journal_due = False
            owned.committing = True
        if not work:
            return
        crash_point("before-commit")
        by_partition: dict[str, tuple[list[CommitEntry], list[int]]] = {}
        for index, (owned, record, turns, pos, replies, settling) in enumerate(work):
            # A released actor awaiting a host call needs an owner now, to issue it again.
            dues = [0.0 if p.due is None else p.due for p in record.pending]
            group = by_partition.setdefault(owned.keys.tag, ([], []))
            group[0].append(CommitEntry(owned.keys, owned.epoch, owned.committed_turns, turns, pos,
                                        storable_record(record.encode(), compress=release),
                                        release, self._work_due_ms(min(dues)) if dues else None, record.next_token,
                                        [p.token for p in record.pending], replies, settling))
            group[1].append(index)

        def build(pipe: Any) -> None:
            for entries, _ in by_partition.values():
                pipe.fcall("mva_commit", *commit_args(self.worker_id, entries))

        replies_by_call = await self._pipeline("committing", build)
        crash_point("after-commit")
        results: list[Any] = [None] * len(work)
        for (_, indexes), statuses in zip(by_partition.values(), replies_by_call, strict=True):
            for n, index in enumerate(indexes):
                results[index] = statuses if isinstance(statuses, Exception) else statuses[n]
        hints = []
        for (owned, record, turns, pos, _, _), result in zip(work, results, strict=True):
            owned.committing = False
            status = "ERROR" if isinstance(result, Exception) else text(result).split(" ", 1)[0]
            if status in ("OK", "DUP"):
                self.stats["commits"] += 1
                self.stats["committed_turns"] += turns - owned.committed_turns
                owned.committed_turns, owned.committed_pos = turns, pos
                owned.committed(record.next_token)
                owned.at_rest_with(record.pending)
                if release:
                    # Only an actor with work left needs a new owner now; a hint for an idle one
                    # would have this worker (or another) adopt it again at once, then release it.
                    if owned.buffer or owned.running or owned.more_mail or owned.awaiting_host:
                        hints.append(owned.actor_id)
                else:
                    self._feed(owned)
                    if owned.uncommitted:
                        self._dirty.add(owned)
            else:
                self._drop(owned, f"its commit was refused ({status}: {result})")
        if hints:  # the next owner need not wait for its scan
            await self._hint_free(hints)
        if self._dirty:
            self._commit_wake.set()

    async def _hint_free(self, actor_ids: list[str]) -> None:
        def build(pipe: Any) -> None:
            for actor_id in actor_ids:
                pipe.xadd(HINT_FREE, {"a": actor_id}, maxlen=64, approximate=True)

        await self._pipeline("handing over", build)

    # ---- leases ----

    def _redis_time(self) -> float:
        """Now on Redis's clock, in seconds since the epoch.

        The work index holds lease expiries that Redis computed (TIME, in the functions): a worker
        comparing them with a clock of its own that runs behind would take a dead worker's actors over
        that much late (ahead: it would try too early, every scan).  The offset is measured at each
        heartbeat; timers still fire on the wall clock of the worker running the actor.
        """
        return time.time() + self._clock_offset

    def _work_due_ms(self, due: float) -> int:
        """A timer's due time (this machine's wall clock) as a work-index score (Redis's clock)."""
        return int((due + self._clock_offset) * 1000) if due > 0 else 0

    async def _measure_clock(self) -> None:
        before = time.time()
        answer: Any = await self.redis.time()
        after = time.time()
        if isinstance(answer, dict):  # a cluster client may answer per node
            answer = next(iter(answer.values()))
        seconds, micros = answer
        self._clock_offset = int(seconds) + int(micros) / 1e6 - (before + after) / 2

    async def _heartbeat(self) -> None:
        """Say this worker is alive; count the live ones (for a fair share of unowned actors)."""
        await self._measure_clock()
        now = self._redis_time()
        pipe = self.redis.pipeline(transaction=False)
        pipe.zadd(WORKERS, {self.worker_id: now})
        pipe.zremrangebyscore(WORKERS, "-inf", now - 3 * self.lease_ms / 1000)
        pipe.zcard(WORKERS)
        self._peers = max(1, int((await pipe.execute())[2]))

    async def _renew_loop(self) -> None:
        interval = self.lease_ms / 1000 / 4
        while True:
            try:
                await self._heartbeat()
            except UNREACHABLE:
                pass  # the renewals below log it
            await anyio.sleep(interval)
            for owned in list(self._owned.values()):
                if not self._lease_fresh(owned):
                    self._drop(owned, "its lease was not renewed in time")
            batch = [o for o in self._owned.values() if not o.gone]
            if not batch:
                continue
            groups = _by_partition(batch)
            sent = time.monotonic()
            pipe = self.redis.pipeline(transaction=False)
            for members in groups.values():  # one call per partition
                pipe.fcall("mva_renew", 1 + len(members), members[0].keys.work, *[o.keys.lease for o in members],
                           self.worker_id, self.lease_ms, *[x for o in members for x in (o.actor_id, o.epoch)])
            try:
                results = await pipe.execute(raise_on_error=False)
            except UNREACHABLE as exc:
                log.warning("worker %s: Redis unreachable while renewing leases (%s)", self.worker_id, exc)
                continue
            for members, renewed in zip(groups.values(), results, strict=True):
                if isinstance(renewed, Exception):
                    continue
                for owned, ok in zip(members, renewed, strict=True):
                    if int(ok) == 1:
                        owned.lease_ok_at = max(owned.lease_ok_at, sent)
                    else:
                        self._drop(owned, "another worker holds its lease")

    def _drop(self, owned: Owned, why: str) -> None:
        """Forget an actor and everything it did since its last commit (its lease is, or may be, gone)."""
        if owned.gone:
            return
        owned.gone = True
        self._owned.pop(owned.actor_id, None)
        self._dirty.discard(owned)
        self.stats["dropped"] += 1
        log.warning("worker %s drops actor %s: %s", self.worker_id, owned.actor_id, why)
        self._evict(owned)

    def _evict(self, owned: Owned) -> ActorRecord | None:
        # By ID, not by owned.actor: that is still None while adopt() yields, yet the runtime
        # already runs the actor, and a copy left there makes the next adoption fail.
        if self._runtime is None or owned.actor_id not in self._runtime:
            return None
        if owned.actor is not None and self._runtime.get(owned.actor_id) is not owned.actor:
            return None  # a later adoption of the same ID: not ours to evict
        try:
            return self.runtime.evict(owned.actor_id)
        except Exception as exc:  # failed actors are gone from the runtime already
            log.debug("evicting %s: %s", owned.actor_id, exc)
            return None

    def _release_quiet(self) -> None:
        """Hand idle actors back to Redis (they hibernate there) after a short grace period."""
        now = time.monotonic()
        grace = self.lease_ms / 1000 / 4
        for owned in list(self._owned.values()):
            if not owned.quiet() or owned.awaiting_host:
                owned.quiet_since = None
                continue
            if owned.next_due is not None and owned.next_due - time.time() < 2 * grace:
                continue  # a timer fires soon: keep it resident
            if owned.quiet_since is None:
                owned.quiet_since = now
            elif now - owned.quiet_since >= grace:
                records = self._take_out([owned])
                if records:
                    assert self._tg is not None
                    self._tg.start_soon(self._release, records)

    def _take_out(self, batch: list[Owned]) -> dict[Owned, tuple[ActorRecord, str]]:
        """Evict actors from the runtime (no turn runs after this) for a final, releasing commit."""
        records: dict[Owned, tuple[ActorRecord, str]] = {}
        for owned in batch:
            if owned.gone or owned.committing:
                continue
            # Before the eviction answers the waiting callers with ActorEvicted here.
            settling = "" if owned.actor is None else _settling_refs(owned, owned.actor)
            record = self._evict(owned)
            self._owned.pop(owned.actor_id, None)
            self._dirty.discard(owned)
            if record is None:
                owned.gone = True
            else:
                records[owned] = record, settling
        return records

    async def _release(self, records: dict[Owned, tuple[ActorRecord, str]]) -> None:
        await self._commit(list(records), release=True, records=records)
        for owned in records:
            owned.gone = True
            self.stats["released"] += 1

    async def _hand_over_all(self) -> None:
        """Graceful close: commit every actor as it is now and release its lease."""
        with anyio.move_on_after(self.lease_ms / 1000 / 2):
            while any(o.committing for o in self._owned.values()):
                await anyio.sleep(0.005)
        records = self._take_out([o for o in self._owned.values() if not o.gone])
        if records:
            await self._release(records)
        try:
            await self.redis.zrem(WORKERS, self.worker_id)
        except UNREACHABLE:
            pass  # its heartbeat ages out
        log.info("worker %s handed over %d actors", self.worker_id, len(records))

    # ---- failure ----

    def _fail_now(self, actor: Actor, reason: str) -> None:
        """Fail an actor for good: out of the runtime now, marked failed in Redis soon."""
        owned = self._owned.get(actor.id)
        if owned is None or owned.gone:
            return
        self._owned.pop(owned.actor_id, None)
        self._dirty.discard(owned)
        owned.gone = True  # evicted by the commit loop: this may run inside a turn's hook
        log.error("worker %s: actor %s failed: %s", self.worker_id, actor.id, reason)
        self._failures.append((owned, reason))
        self._commit_wake.set()

    async def _fail_in_redis(self, owned: Owned, reason: str) -> None:
        waiting = [m for m, _ in owned.running] + list(owned.buffer)
        reply_keys = [owned.keys.reply(m.message_id) for m in waiting if m.wants_reply]
        reply_keys += [key for key, _ in owned.settling]
        payload = pack([REPLY_FAILED, reason])
        keys = owned.keys
        result = await self._retrying("failing an actor", lambda: self.redis.fcall(  # type: ignore[misc]
            "mva_fail", 4 + len(reply_keys), keys.state, keys.lease, keys.work, keys.ready, *reply_keys,
            owned.actor_id, self.worker_id, owned.epoch, reason, *[payload] * len(reply_keys)))
        if text(result[0]) == "OK":
            self.stats["failed"] += 1

    # ---- journal ----

    def _journal_read(self, actor: Actor, token: int) -> bytes | None:
        owned = self._owned.get(actor.id)
        return None if owned is None else owned.journal.get(token)

    async def _journal_issued(self, actor: Actor, call: AsyncCall) -> bool:
        owned = self._owned.get(actor.id)
        if owned is None or owned.gone or owned.actor not in (None, actor):
            return False
        # (a handed-over actor leaves _owned before its last commit lands, and is no longer ours)
        return await owned.issued(call.token) and self._owned.get(actor.id) is owned

    async def _journal_write(self, actor: Actor, call: AsyncCall, entry: bytes) -> bytes | None:
        owned = self._owned.get(actor.id)
        # (owned.actor is None while adopt() is re-issuing the calls the record awaits)
        if owned is None or owned.gone or owned.actor not in (None, actor):
            return None
        crash_point("before-journal")
        keys = owned.keys
        while True:
            if not self._lease_fresh(owned):
                self._drop(owned, "its lease may have lapsed while journaling")
                return None
            try:
                result = await self.redis.fcall("mva_journal", 3, keys.state, keys.lease, keys.journal,  # type: ignore[misc]
                                                self.worker_id, owned.epoch, call.token, entry)
                break
            except UNREACHABLE as exc:
                log.warning("worker %s: Redis unreachable while journaling %s (%s)", self.worker_id, call.key, exc)
                await anyio.sleep(_BACKOFF_MIN)
        status = text(result[0])
        if status == "OK":
            owned.journal[call.token] = entry
            return entry
        if status == "DUP":
            owned.journal[call.token] = result[1]
            return bytes(result[1])
        self._drop(owned, f"its journal write was refused ({status})")
        return None


def _by_partition(batch: list[Owned]) -> dict[str, list[Owned]]:
    """``batch`` grouped by the partition (hash tag) its keys live in: one server-side call per group."""
    groups: dict[str, list[Owned]] = {}
    for owned in batch:
        groups.setdefault(owned.keys.tag, []).append(owned)
    return groups


def _settling_refs(owned: Owned, actor: Actor) -> str:
    """JSON [[promise key, reply key]...] for the replies of async exports not settled yet, by the key
    each promise travels under in the record made at the same moment (``actor.record()``)."""
    if not owned.settling:
        return ""
    reply_key = {id(reply): key for key, reply in owned.settling}
    pairs = [[ref, reply_key[id(reply)]] for ref, reply in actor.awaiting().items() if id(reply) in reply_key]
    return json.dumps(pairs) if pairs else ""


def _reply_payload(reply: Reply) -> bytes:
    try:
        value = reply.result()
    except GuestError as exc:
        try:
            return pack([REPLY_GUEST_ERROR, exc.value])
        except TypeError:
            return pack([REPLY_GUEST_ERROR, repr(exc.value)])
    except Exception as exc:
        return pack([REPLY_FAILED, f"{type(exc).__name__}: {exc}"])
    try:
        return pack([REPLY_OK, value])
    except TypeError as exc:
        return pack([REPLY_UNSENDABLE, str(exc)])


__all__ = ["ImportTables", "Worker"]

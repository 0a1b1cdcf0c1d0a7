"""``Committer``: every write of an actor's progress to Redis, fenced by its lease epoch.

It keeps the dirty set (actors with turns or replies not committed), and sends their commits
in one pipeline with one ``mva_commit`` per partition (group commit).  It also sends the
releasing commit of actors handed back to Redis, and the failure writes (``mva_fail``) that
mark an actor failed and answer each of its waiting callers in the same write.

A full Redis refuses a commit before it writes anything (``mva_commit`` is not ``allow-oom``):
the actors stay here, run no further turn (each waits for its commit), and the commit is sent
again, with the same turns and positions, under the link's backoff until memory is freed.

``replica_acks = N >= 1`` (issue 15): a turn's reply must not be readable before its commit is
on N replicas, or a failover could hand a caller the reply of a turn the new master never saw
(re-applied: a counter value handed out twice).  So:

1. the commit stages its replies in the actor's hash (field ``y``) instead of writing the reply
   streams the callers block on;
2. the commits of one master go out on one connection, followed by ``mva_sync`` and ``WAIT N``
   (:meth:`RedisLink.acked`); fewer than N acks is a failed commit: sent again, same IDs (a
   repeat answers DUP, and the sync makes the next WAIT cover the first attempt's writes);
3. only then ``mva_publish`` moves the staged replies of this commit to their reply streams;
4. a worker that adopts an actor with staged replies (its owner died between 2 and 3) waits for
   the replicas (sync + WAIT) and publishes them: they belong to the record it adopted.

A failure (``mva_fail``) stages the failed callers' replies the same way, and publishes them after
a sync + WAIT.  A reply stream therefore only exists for a commit N replicas hold.  What the master holds
beyond that (a staged reply, an unreplicated commit) is never shown to a caller, and is lost or
kept by a failover without anyone having trusted it.  N = 0 writes the reply streams in the
commit, as before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import anyio
import redis.exceptions

from ..actors import ActorRecord
from .crash import crash_point, snapshot_point
from .keys import HINT_FREE, ActorKeys
from .link import OUT_OF_MEMORY, RedisLink
from .owned import Owned
from .stats import WorkerStats
from .wire import (
    CommitEntry,
    FailReply,
    commit_args,
    commit_statuses,
    fail_args,
    fetch_args,
    fetched,
    staged_keys,
    storable_record,
)

log = logging.getLogger("mvactors")

_FETCH_COUNT = 256  # mailbox entries read per call while naming a failed actor's callers


class CommitHooks(Protocol):
    """What the committer asks of its worker."""

    def drop(self, owned: Owned, why: str) -> None:
        """Forget ``owned`` and what it did since its last commit (its lease is, or may be, gone)."""

    def fail(self, owned: Owned, why: str) -> None:
        """Fail ``owned`` for good (out of the runtime, then :meth:`Committer.fail_later`)."""

    def evict_failed(self, owned: Owned) -> None:
        """Take a failed actor out of the runtime (its record is not wanted)."""

    def landed(self, owned: Owned) -> None:
        """A commit of ``owned`` landed and it stays here: hand it more mail."""

    def work_due_ms(self, due: float) -> int:
        """A wall-clock due time as a work-index score (Redis's clock)."""


class Committer:
    """Group commits, releasing commits and failure writes of one worker."""

    def __init__(self, link: RedisLink, worker_id: str, checkpoint_every: int, lease_safe: float,
                 stats: WorkerStats, hooks: CommitHooks) -> None:
        self.link = link
        self.worker_id = worker_id
        self.checkpoint_every = checkpoint_every
        self.lease_safe = lease_safe
        self.stats = stats
        self.dirty: set[Owned] = set()
        self._hooks = hooks
        self._failures: list[tuple[Owned, str]] = []
        self._adopted: list[ActorKeys] = []  # (replica_acks) adopted actors whose staged replies to publish
        # Actors whose failure is not yet written: their lease may have lapsed during the fatal
        # turn (the hard stop is 5 s, a lease 2 s), and re-acquiring one here would fence the write.
        self.failing: set[str] = set()
        self._wake = anyio.Event()
        self._in_flight = 0  # commit() calls running
        self._quiet: anyio.Event | None = None  # set when _in_flight drops to 0 (made by the first waiter)
        self._stopping = False

    # ---- the per-turn path ----

    def mark(self, owned: Owned) -> None:
        """``owned`` ran a turn (or has replies): commit it when its checkpoint is due."""
        self.dirty.add(owned)
        self._wake.set()

    def fail_later(self, owned: Owned, reason: str) -> None:
        """Mark ``owned`` failed in Redis soon (it is out of the owned set already)."""
        self.dirty.discard(owned)
        self.failing.add(owned.actor_id)
        self._failures.append((owned, reason))
        self._wake.set()

    # ---- the loop ----

    async def run(self) -> None:
        """Commit dirty actors and write failures until shut down."""
        while not self._stopping:
            await self._wake.wait()
            self._wake = anyio.Event()
            while self.dirty or self._failures or self._adopted:
                if self._adopted:
                    adopted, self._adopted = self._adopted, []
                    await self._publish_adopted(adopted)
                if self._failures:
                    failures, self._failures = self._failures, []
                    for owned, reason in failures:
                        self._hooks.evict_failed(owned)
                        try:
                            await self.fail_in_redis(owned, reason)
                        finally:
                            self.failing.discard(owned.actor_id)
                batch = [o for o in self.dirty if self._due(o)]
                self.dirty.difference_update(batch)
                if not batch:
                    break
                await self.commit(batch)

    def notify_shutdown(self) -> None:
        """Stop once the commits and failures queued now are written."""
        self._stopping = True
        self._wake.set()

    def _due(self, owned: Owned) -> bool:
        if owned.gone or owned.committing or owned.uncommitted == 0 or owned.actor is None:
            return False  # (None: adopt() has not returned; it marks the actor dirty when it does)
        return (owned.uncommitted >= self.checkpoint_every or owned.journal_due
                or (not owned.submitted and not owned.buffer))

    async def quiesce(self) -> None:
        """Wait until no commit is in flight."""
        while self._in_flight:
            if self._quiet is None:
                self._quiet = anyio.Event()
            await self._quiet.wait()

    # ---- commits ----

    def _entry(self, owned: Owned, record: ActorRecord, settling: str, release: bool) -> CommitEntry:
        # A released actor awaiting a host call needs an owner now, to issue it again.
        dues = [0.0 if p.due is None else p.due for p in record.pending]
        return CommitEntry(owned.keys, owned.epoch, owned.committed_turns, owned.turns, owned.applied_pos,
                           storable_record(record.encode(), compress=release), release,
                           self._hooks.work_due_ms(min(dues)) if dues else None, record.next_token,
                           [p.token for p in record.pending], owned.replies, settling, owned.last_failure,
                           owned.pause, owned.kept or None, owned.history)

    async def commit(self, batch: list[Owned], release: bool = False,
                     records: Mapping[Owned, tuple[ActorRecord, str]] | None = None) -> None:
        """Commit each actor's state now (or ``records``: record, settling) in one pipeline; ``release`` also
        gives up the lease.  An actor whose record cannot be taken or encoded fails; the others go on."""
        work: list[tuple[Owned, ActorRecord, CommitEntry]] = []
        for owned in batch:
            if not owned.lease.fresh(self.lease_safe):
                self._hooks.drop(owned, "its lease may have lapsed (not renewed in time)")
                continue
            try:
                if records is not None:
                    record, settling = records[owned]
                else:
                    actor = owned.actor
                    assert actor is not None
                    snapshot_point(owned.actor_id)
                    # Garbage is collected only when it pays (a forced collection is most of a record's cost);
                    # the releasing commit stores a collected record (evict() makes one).
                    record, settling = actor.record(collect=None), owned.settling_refs(actor)
                entry = self._entry(owned, record, settling, release)
            except Exception as exc:  # this actor's VM or state cannot be saved: it fails, not the worker
                self._hooks.fail(owned, f"its record could not be taken: {type(exc).__name__}: {exc}")
                continue
            work.append((owned, record, entry))
            owned.replies = []
            if owned.kept:  # (None for actors without history: nothing to do)
                owned.kept = []
            owned.last_failure = ""
            owned.journal_due = False
            owned.committing = True
        if not work:
            return
        self._in_flight += 1
        try:
            await self._send(work, release)
        finally:
            self._in_flight -= 1
            if not self._in_flight and self._quiet is not None:
                self._quiet.set()
                self._quiet = None

    async def _commit_calls(self, calls: dict[str, list[Any]], fresh: Callable[[str], bool]) -> dict[str, Any]:
        """Run one ``mva_commit`` per partition (``calls``: tag -> its arguments) until each has an answer
        that is not OOM and, with replica_acks, is on enough replicas; the answers by tag.

        ``fresh(tag)``: whether a lease of that partition's actors may still commit.  A partition whose
        master is gone (a failover takes cluster-node-timeout and more) is given up once none is: its
        answer is an error, its actors are dropped, and the other partitions' commits go on."""
        answers: dict[str, Any] = {}
        stage = ["1"] if self.link.replica_acks else []

        async def attempt() -> None:
            for tag in calls:
                if tag not in answers and not fresh(tag):
                    answers[tag] = redis.exceptions.ConnectionError("no answer before its leases lapsed")
            todo = [tag for tag in calls if tag not in answers]
            if not todo:
                return
            if not self.link.replica_acks:
                raw = await self.link.pipeline_once(
                    lambda pipe: [pipe.fcall("mva_commit", *calls[tag]) for tag in todo])
                got = list(zip(todo, raw, strict=True))
            else:
                got = []
                problem: Exception | None = None
                for group in await self.link.by_master(todo):  # (one master on a single Redis: one WAIT)
                    def build(pipe: Any, group: list[str] = group) -> None:
                        for tag in group:
                            pipe.fcall("mva_commit", *calls[tag], *stage)
                    try:
                        raw = await self.link.acked(group[0], build)
                    except self.link.retried as exc:  # this master's part is sent again; the others count
                        problem = exc
                        continue
                    got += zip(group, raw, strict=True)
                if problem is not None and not got:
                    raise problem
            full: Exception | None = None
            for tag, answer in got:
                if isinstance(answer, OUT_OF_MEMORY):
                    full = answer  # refused before any write: the same commit goes again
                else:
                    answers[tag] = answer
            if full is not None:
                raise full
            if len(answers) < len(calls):
                raise redis.exceptions.TryAgainError("some masters did not confirm the commit yet")

        await self.link.retrying("committing", attempt)
        return answers

    async def _publish(self, staged: list[tuple[ActorKeys, list[str]]]) -> None:
        """Make the staged replies of replicated commits readable (``mva_publish``, safe to repeat)."""
        def build(pipe: Any) -> None:
            for keys, reply_keys in staged:
                pipe.fcall("mva_publish", 1 + len(reply_keys), keys.state, *reply_keys)

        for (keys, _), answer in zip(staged, await self.link.pipeline("publishing replies", build), strict=True):
            if isinstance(answer, Exception):  # the next owner publishes them (see the module docstring)
                log.warning("worker %s: publishing the replies of %s failed: %s", self.worker_id, keys.actor_id,
                            answer)

    def adopted(self, keys: ActorKeys) -> None:
        """(replica_acks) An actor was adopted: publish what its last owner staged and had no time to
        publish, once the replicas hold it (they may not: that owner may have died before its WAIT)."""
        self._adopted.append(keys)
        self._wake.set()

    async def _publish_adopted(self, batch: list[ActorKeys]) -> None:
        # One pipeline for a batch: a worker adopting 1,000 actors at once would otherwise open as
        # many connections (the pool's limit is 100).
        raws = await self.link.pipeline("reading staged replies",
                                        lambda pipe: [pipe.hget(keys.state, "y") for keys in batch])
        found = [(keys, staged_keys(raw)) for keys, raw in zip(batch, raws, strict=True)
                 if raw and not isinstance(raw, Exception)]
        if not found:
            return
        # The sync + WAIT comes after the reads: it covers the commits that staged what was read.
        for group in await self.link.by_master(sorted({keys.tag for keys, _ in found})):
            await self.link.synced(group[0])
        await self._publish(found)

    async def _send(self, work: list[tuple[Owned, ActorRecord, CommitEntry]], release: bool) -> None:
        crash_point("before-commit")
        by_partition: dict[str, list[int]] = {}
        for index, (owned, _, _) in enumerate(work):
            by_partition.setdefault(owned.keys.tag, []).append(index)

        def fresh(tag: str) -> bool:
            return any(work[i][0].lease.fresh(self.lease_safe) for i in by_partition[tag])

        answers = await self._commit_calls({tag: commit_args(self.worker_id, [work[i][2] for i in indexes])
                                            for tag, indexes in by_partition.items()}, fresh)
        replies_by_call = [answers[tag] for tag in by_partition]
        if self.link.replica_acks:
            staged = [(work[index][2].keys, [key for key, _ in work[index][2].replies])
                      for indexes, raw in zip(by_partition.values(), replies_by_call, strict=True)
                      for index, status in zip(indexes, commit_statuses(raw, len(indexes)), strict=True)
                      if status.landed and work[index][2].replies]
            if staged:
                crash_point("before-publish")
                await self._publish(staged)
        crash_point("after-commit")
        hints = []
        for indexes, raw in zip(by_partition.values(), replies_by_call, strict=True):
            for index, status in zip(indexes, commit_statuses(raw, len(indexes)), strict=True):
                owned, record, entry = work[index]
                owned.committing = False
                if not status.landed:
                    self._hooks.drop(owned, f"its commit was refused ({status.status}: {status.detail})")
                    continue
                self.stats.commits += 1
                self.stats.committed_turns += entry.turns - owned.committed_turns
                owned.committed_turns, owned.committed_pos = entry.turns, entry.pos
                owned.committed(record.next_token)
                owned.at_rest_with(record.pending)
                if release:
                    # Only an actor with work left needs a new owner now; a hint for an idle one
                    # would have this worker (or another) adopt it again at once, then release it.
                    if owned.buffer or owned.submitted or owned.more_mail or owned.awaiting_host:
                        hints.append(owned.actor_id)
                else:
                    self._hooks.landed(owned)
                    if owned.uncommitted:
                        self.dirty.add(owned)
        if hints:  # the next owner need not wait for its scan
            await self.hint_free(hints)
        if self.dirty:
            self._wake.set()

    async def hint_free(self, actor_ids: list[str]) -> None:
        """Wake the workers that wait for actors with no owner."""
        def build(pipe: Any) -> None:
            for actor_id in actor_ids:
                pipe.xadd(HINT_FREE, {"a": actor_id}, maxlen=64, approximate=True)

        await self.link.pipeline("handing over", build)

    # ---- failures ----

    async def fail_in_redis(self, owned: Owned, reason: str) -> None:
        """Mark the actor failed with ``reason`` and answer every caller waiting on it, in one fenced write.

        The callers of mail this worker never read are found first: Redis refuses (MORE) while the
        mailbox holds entries after the last one named."""
        waiting = owned.waiting_callers()
        read_pos = owned.read_pos
        while True:
            # With replica_acks the replies are staged: the callers hear of it once the replicas hold it.
            args = fail_args(owned.keys, self.worker_id, owned.epoch, reason, read_pos, waiting,
                             stage=self.link.replica_acks > 0)
            reply = FailReply.decode(await self.link.retrying(
                "failing an actor", lambda a=args: self.link.redis.fcall("mva_fail", *a)))  # type: ignore[misc]
            if reply.status != "MORE":
                break
            read_pos = await self._read_callers(owned, read_pos, waiting)
        if reply.status == "OK" and self.link.replica_acks and waiting:
            await self.link.synced(owned.keys.tag)  # (covers the failure's write, made on another connection)
            await self._publish([(owned.keys, waiting)])
        if reply.status == "OK":
            self.stats.failed += 1
        else:
            log.warning("worker %s: actor %s was not marked failed (%s)", self.worker_id, owned.actor_id,
                        reply.status)

    async def _read_callers(self, owned: Owned, read_pos: str, waiting: list[str]) -> str:
        """Add the reply keys of the mail after ``read_pos`` to ``waiting``; the new last position."""
        args = fetch_args([(owned.keys.mailbox, read_pos)], _FETCH_COUNT)
        blob = await self.link.retrying("reading a failed actor's mail",
                                        lambda: self.link.redis.fcall("mva_fetch", *args))  # type: ignore[misc]
        for mail in fetched(blob)[0]:
            if mail.wants_reply:
                waiting.append(owned.keys.reply(mail.message_id))
            read_pos = mail.stream_id
        return read_pos



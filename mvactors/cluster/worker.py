"""``mvactors.Worker``: a process that runs actors stored in Redis, turn by fenced turn.

The worker leases actors (``mva_acquire``: SET NX PX plus a fencing epoch), adopts their
records into a local :class:`~mvactors.actors.Runtime`, feeds them their mailbox stream,
and commits each turn's record, stream position and replies in one ``mva_commit`` that
checks the epoch; the commits of many actors go out in one pipeline (group commit).
Callers see a turn's reply only once it is committed.  A worker that cannot renew a
lease in time drops the actor (and its unsaved turns) before anyone else may take it.

This module is the facade: configuration, lifecycle, the owned set, and what happens to
one actor (adopt, feed, drop, fail, release).  Its components share one lifecycle shape
(``run()``, ``notify_shutdown()``): :class:`~.lease.Leases` (heartbeat, renewals, clock),
:class:`~.discovery.Discovery` (hints, work index, acquire, mail), :class:`~.committer.Committer`
(group commits, releases, failures) and :class:`~.journal.RedisJournal`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import anyio.abc

from ..actors import Actor, ActorRecord, AsyncCall, Runtime, TurnOutcome
from ..actors.gas import PauseEvent
from ..errors import ActorError, EngineExhausted
from ..imports import Journaled
from ..vm import load_engine
from .committer import Committer
from .crash import crash_point
from .deployment import check_deployment
from .discovery import HINT_BLOCK_MS, Discovery
from .handover import HandOver
from .history import note_turn, recording
from .journal import RedisJournal
from .keys import ActorKeys
from .lease import Lease, Leases
from .link import REPLICA_WAIT_MS, Redis, RedisLink
from .owned import Owned
from .release import Releases
from .stats import WorkerStats
from .wire import UPGRADE_BARRIER, Acquired, CorruptState, stored_record

log = logging.getLogger("mvactors")

ImportTables = Mapping[str, Mapping[int, Callable[..., Any]]]


class Worker(HandOver):
    """Runs the actors stored in Redis at ``url`` (``redis://`` or ``redis+cluster://``).

    ``imports`` maps import-table names (an actor's ``spawn(imports=...)``) to import maps;
    every worker should have the same tables.  ``max_actors`` caps the actors held at once,
    ``lease_ms`` is the lease TTL (a crashed worker's actors move after it), and
    ``checkpoint_every`` commits every N turns (and when an actor goes quiet or moves);
    turns since the last commit are replayed from the mailbox after a crash.
    ``idle_release_s``: an actor with no mail, host call or timer for this long is handed back to
    Redis (it hibernates there; any worker adopts it at its next message); sooner when this worker
    holds more than its share of the live workers' actors, or is at ``max_actors``.
    ``replica_acks`` (N): a commit counts, and its replies become readable, only once N replicas
    of its master hold it (``WAIT``; see :mod:`~.committer`); 0 trusts the master alone.

    Entering it refuses a Redis that may evict keys (:class:`EvictionPolicyRefused`) and logs a
    WARNING saying what a redis-server crash would lose when persistence is weaker than
    ``appendonly yes`` + ``appendfsync always``.  A full Redis (OOM) is waited out.

    One actor's fatal error (a turn, its record, its encoding) fails that actor in Redis,
    answers its waiting callers, and leaves the worker serving the others.

    >>> async with mvactors.Worker(url, IMPORTS) as worker:
    ...     await worker.wait_closed()
    """

    def __init__(self, url: str, imports: ImportTables, worker_id: str | None = None,
                 max_actors: int | None = None, lease_ms: int = 2000, checkpoint_every: int = 1,
                 replica_acks: int = 0, idle_release_s: float = 10.0) -> None:
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
        if not isinstance(replica_acks, int) or isinstance(replica_acks, bool) or replica_acks < 0:
            raise ValueError(f"replica_acks must be an int >= 0, not {replica_acks!r}")
        if not isinstance(idle_release_s, (int, float)) or isinstance(idle_release_s, bool) or not (
                idle_release_s >= 0):
            raise ValueError(f"idle_release_s must be a number of seconds >= 0, not {idle_release_s!r}")
        self.url = url
        self.idle_release_s = float(idle_release_s)
        self.replica_acks = replica_acks
        self.imports = imports
        self.worker_id = worker_id
        self.max_actors = max_actors
        self.lease_ms = lease_ms
        self.checkpoint_every = checkpoint_every
        self._owned: dict[str, Owned] = {}
        self._closed = anyio.Event()
        self._closing = False
        self._stats = WorkerStats()
        self._link: RedisLink | None = None
        self._runtime: Runtime | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._leases: Leases | None = None
        self._discovery: Discovery | None = None
        self._releases: Releases | None = None
        self._committer: Committer | None = None
        self._host = socket.gethostname()
        self._started = round(time.time(), 3)

    # ---- lifecycle ----

    async def __aenter__(self) -> Worker:
        # A missing or stale engine build is this worker's fault, not the actors': refuse to
        # start instead of failing every actor it would adopt.
        load_engine()
        link = self._link = RedisLink(self.url, blocking_timeout=HINT_BLOCK_MS / 1000 + 10,
                                      who=f"worker {self.worker_id}", retry_oom=True, replica_acks=self.replica_acks)
        leases = self._leases = Leases(link, self.worker_id, self.lease_ms, self._owned, self._drop, self._info)
        self._committer = Committer(link, self.worker_id, self.checkpoint_every, leases.safe, self._stats,
                                    _CommitHooks(self))
        releases = self._releases = Releases(leases, self.lease_ms, self.idle_release_s, self._owned,
                                             lambda: self.max_actors)
        self._discovery = Discovery(link, self.worker_id, leases, self._owned, self._committer.failing,
                                    releases.yielded, lambda: self.max_actors, self._adopt, self._feed,
                                    self._release_quiet)
        journal = RedisJournal(link, self.worker_id, self._owned, leases.safe, self._drop, self._fail_now)
        try:
            await link.guarded(lambda: check_deployment(link.redis, warn_persistence=True))
            await link.load_functions()
            await link.guarded(leases.heartbeat)
            self._runtime = Runtime(host_calls=journal.host_calls(self._host_outcome), on_turn=self._on_turn,
                                    on_pause=self._on_pause)
            await self._runtime.__aenter__()
            self._tg = anyio.create_task_group()
            await self._tg.__aenter__()
        except BaseException:
            await self._close_connections()
            raise
        for part in (self._discovery, leases, self._committer):
            self._tg.start_soon(part.run)
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
        log.info("worker %s closed (%s)", self.worker_id, self.stats())

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
        if self._discovery is not None:
            self._discovery.notify_shutdown()
        try:
            if graceful and self._link is not None and self._runtime is not None:
                # A commit waits up to REPLICA_WAIT_MS for the replicas, and the hand-over may wait
                # for one in flight and then send its own: give both their time.
                budget = max(2.0, self.lease_ms / 1000) + (2 * REPLICA_WAIT_MS / 1000 if self.replica_acks else 0)
                with anyio.CancelScope(shield=True), anyio.move_on_after(budget):
                    await self._hand_over_all(budget / 2)
        finally:
            self._closed.set()

    async def _close_connections(self) -> None:
        if self._link is not None:
            await self._link.aclose()
        self._link = None

    @property
    def redis(self) -> Redis:
        """The worker's connection pool for plain requests."""
        assert self._link is not None
        return self._link.redis

    @property
    def runtime(self) -> Runtime:
        """The local runtime the worker's actors run in."""
        assert self._runtime is not None
        return self._runtime

    @property
    def actors(self) -> list[str]:
        """IDs of the actors this worker holds now."""
        return list(self._owned)

    def stats(self) -> dict[str, int]:
        """Counters since start: acquired, released, dropped, commits, turns, committed_turns, failed,
        unawaited_failures (turns of a ``send()`` that raised or whose promise rejected)."""
        return self._stats.as_dict()

    def _info(self) -> dict[str, str | int | float]:
        """What each heartbeat publishes about this worker (``Client.workers()``)."""
        return {"host": self._host, "pid": os.getpid(), "started": self._started, "actors": len(self._owned),
                "turns": self._stats.turns}

    # ---- turns (the per-turn path: every line here runs once per turn) ----

    def _on_turn(self, actor: Actor, outcome: TurnOutcome) -> None:
        owned = self._owned.get(actor.id)
        # (owned.actor is None while adopt() yields: a completion of a call it re-issued can run then)
        if owned is None or owned.actor not in (None, actor):
            return
        owned.turns += 1
        self._stats.turns += 1
        crash_point("after-turn")
        calls = outcome.calls
        if calls and any(isinstance(call.fn, Journaled) for call in calls):
            owned.journal_due = True  # the call waits for this turn's commit: make it soon
        reply = outcome.reply
        mail = None
        if reply is not None:
            mail = owned.submitted.pop(reply, None)  # the runtime says which message ran
            if mail is not None:
                owned.applied_pos = mail.stream_id
                if mail.wants_reply:
                    owned.settling.append((owned.keys.reply(mail.message_id), reply))
                elif not reply.done or reply.error is not None:  # (a send that ran to its end: nothing)
                    unawaited = owned.watch(mail, reply)
                    if unawaited is not None:
                        self._unawaited(owned, [unawaited])
        if owned.settling:
            unawaited_later = owned.collect_settled()
            if unawaited_later:
                self._unawaited(owned, unawaited_later)
        if owned.history:  # spawn(history=K): this turn's entry and record go with its commit
            note_turn(owned, actor, outcome, mail)
        if outcome.failure is not None:
            self._fail_now(actor, f"{type(outcome.failure).__name__}: {outcome.failure}")
            return
        assert self._committer is not None
        self._committer.mark(owned)

    def _on_pause(self, actor: Actor, event: PauseEvent) -> None:
        """A turn ran out of gas and was rolled back: the actor pauses in Redis (reason "gas") and is
        released in one commit; its message stays first in the mailbox and its caller keeps waiting
        until ``client.resume`` (or ``cancel``).  A quota that refills resumes by itself on Redis's
        clock ("until"), on whichever worker acquires it then."""
        owned = self._owned.get(actor.id)
        if owned is None or owned.actor is not actor or owned.gone or self._closing:
            return
        assert self._leases is not None
        pause: dict[str, Any] = {"reason": "gas", "since": round(self._leases.redis_time(), 3),
                                 "detail": f"{event.reason} budget of {event.gas_budget} instructions ran out "
                                           f"in the {event.message}", "gas": event.reason}
        head = next(iter(owned.submitted.values()), None)
        if head is not None and event.message.startswith("call of export"):
            pause["message_id"] = head.message_id
        meter = actor.cell.meter
        full_at = meter.full_at() if event.reason == "quota" and meter is not None else None
        if full_at is not None and math.isfinite(full_at):
            # (the runtime's clock is monotonic; the work index keeps Redis's wall clock)
            pause["until"] = self._leases.work_due_ms(time.time() + max(0.0, full_at - actor.cell.clock.now()))
        owned.pause = json.dumps(pause)
        log.info("worker %s: actor %s paused: %s", self.worker_id, actor.id, pause["detail"])
        records = self._take_out([owned])
        if records:
            assert self._tg is not None
            self._tg.start_soon(self._release, records, "paused: out of gas")

    def _host_outcome(self, actor: Actor, call: AsyncCall, ok: bool, value: Any) -> None:
        """An async host call's outcome, about to reach ``actor``: history keeps it with its completion turn."""
        owned = self._owned.get(actor.id)
        if owned is not None and owned.delivered is not None:
            owned.delivered.append((call.token, ok, value))

    def _unawaited(self, owned: Owned, failures: list[tuple[str, BaseException]]) -> None:
        """Turns of a ``send()`` that failed with no caller to tell: logged and counted, as a Runtime does
        (describe's ``last_failure`` gets the last one with the next commit)."""
        for message_id, error in failures:
            self._stats.unawaited_failures += 1
            log.warning("worker %s: actor %s: message %s (a send, nobody awaits it) failed: %s: %s",
                        self.worker_id, owned.actor_id, message_id, type(error).__name__, error)

    def _feed(self, owned: Owned) -> None:
        """Submit buffered mail within the checkpoint budget; ask for more when the buffer is empty."""
        actor = owned.actor
        if owned.gone or actor is None or self._closing:
            return
        room = self.checkpoint_every - owned.uncommitted - len(owned.submitted)
        while room > 0 and owned.buffer:
            if owned.buffer[0].export_id == UPGRADE_BARRIER:  # the mail after it waits for the new code
                self._at_barrier(owned)
                return
            mail = owned.buffer.popleft()
            owned.submitted[actor.submit(mail.export_id, *mail.args)] = mail
            room -= 1
        if not owned.buffer and owned.more_mail:
            assert self._discovery is not None
            self._discovery.want_fetch(owned)
        owned.quiet_since = None

    # ---- one actor: adopt, forget, drop, fail, evict ----

    async def _adopt(self, keys: ActorKeys, got: Acquired | CorruptState, sent: float) -> str | None:
        """Run an acquired actor here; "adopted actor <id> (turn N)" for Discovery to log with its batch (a takeover,
        rarer and worth its own line, is logged here)."""
        if isinstance(got, CorruptState):
            await self._corrupt(keys, got)
            return None
        actor_id = keys.actor_id
        owned = Owned(actor_id, keys, Lease(keys, got.epoch, sent), got.turns, got.pos, got.journal)
        owned.turns, owned.applied_pos, owned.read_pos = owned.committed_turns, owned.committed_pos, owned.committed_pos
        self._owned[actor_id] = owned
        self._stats.acquired += 1
        try:
            name = got.imports
            if name and name not in self.imports:
                raise LookupError(f"no worker import table named {name!r} (this worker has: "
                                  f"{', '.join(sorted(self.imports)) or 'none'})")
            imports = self.imports.get(name, {}) if name else {}
            owned.history = got.history
            if got.history:  # its synchronous host calls' results are kept too (replay answers from them)
                owned.kept, owned.host_log, owned.delivered = [], [], deque()
                imports = recording(imports, owned.host_log)
            record = ActorRecord(snapshot=got.saved) if got.fresh else ActorRecord.decode(stored_record(got.saved))
            owned.committed_next_token = record.next_token  # the calls it awaits may run (again) at once
            owned.actor = await self.runtime.adopt(record, actor_id, imports, got.gas)
            if got.gas_grant:  # resumed after a gas pause: the next turn gets what resume() gives
                reason, _, extra = got.gas_grant.partition(":")
                owned.actor.grant_gas(int(extra) if extra else None,
                                      reason="quota" if reason == "quota" else "per_turn", refill=reason == "refill")
            if owned.gone:  # dropped while adopt() yielded (its lease lapsed): nothing may stay behind
                self._evict(owned)
                return None
            if self.replica_acks:  # replies its last owner staged and may not have published
                assert self._committer is not None
                self._committer.adopted(keys)
            self._claim_replies(owned, owned.actor, got.settling)
            # Turns that ran before adopt() returned (see _on_turn) may have settled a claimed promise.
            unawaited = owned.collect_settled()
            if unawaited:
                self._unawaited(owned, unawaited)
            if owned.replies or owned.uncommitted:
                assert self._committer is not None
                self._committer.mark(owned)
        except EngineExhausted as exc:
            # This process holds as many VMs as its memory allows: the actor is sound and
            # this worker is full.  Its lease lapses and a worker with room takes it.
            self._drop(owned, str(exc))
            self.max_actors = max(1, len(self._owned))
            log.warning("worker %s now holds at most %d actors", self.worker_id, self.max_actors)
            return None
        except Exception as exc:
            self._forget(owned)
            log.error("worker %s: actor %s cannot run here and fails: %s", self.worker_id, actor_id, exc)
            assert self._committer is not None
            await self._committer.fail_in_redis(owned, f"{type(exc).__name__}: {exc}")
            return None
        owned.at_rest_with(record.pending)
        note: str | None = None
        if got.previous_owner and got.previous_owner != self.worker_id:
            log.info("worker %s took over actor %s from worker %s (its lease lapsed without a release)",
                     self.worker_id, actor_id, got.previous_owner)
        else:
            note = f"adopted actor {actor_id} (turn {got.turns})"
        self._feed(owned)
        return note

    async def _corrupt(self, keys: ActorKeys, error: CorruptState) -> None:
        """An acquired actor whose state in Redis does not decode fails, fenced by the epoch it got."""
        reason = f"its state in Redis ({keys.state}, {keys.journal}) is corrupt: {error}"
        log.error("worker %s: actor %s fails: %s", self.worker_id, keys.actor_id, reason)
        assert self._committer is not None
        await self._committer.fail_in_redis(Owned(keys.actor_id, keys, Lease(keys, error.epoch, 0.0), 0, "0-0", {}),
                                            reason)

    def _claim_replies(self, owned: Owned, actor: Actor, settling: str) -> None:
        """Wait again on the async exports the record's promises will answer: their callers still
        read the reply keys, and the commit of the turn that settles one writes its reply."""
        for ref, reply_key in json.loads(settling) if settling else ():
            try:
                owned.settling.append((reply_key, actor.reply_for(ref)))
            except ActorError as exc:  # a record and its settling list are committed together
                log.error("worker %s: actor %s: the reply %s cannot be answered: %s",
                          self.worker_id, owned.actor_id, reply_key, exc)

    def _forget(self, owned: Owned) -> bool:
        """The one step every way of letting an actor go starts with: out of the owned set and the
        commit queue, and marked gone (nothing more is committed from here).  False if it was gone."""
        if owned.gone:
            return False
        owned.gone = True
        if self._owned.get(owned.actor_id) is owned:
            del self._owned[owned.actor_id]
        if self._committer is not None:
            self._committer.dirty.discard(owned)
        return True

    def _drop(self, owned: Owned, why: str) -> None:
        """Forget an actor and everything it did since its last commit (its lease is, or may be, gone)."""
        if self._forget(owned):
            self._stats.dropped += 1
            log.warning("worker %s drops actor %s: %s", self.worker_id, owned.actor_id, why)
            self._evict(owned)

    def _fail(self, owned: Owned, why: str) -> None:
        """Fail ``owned`` for good: out of the owned set now; out of the runtime and failed in Redis
        (its waiting callers answered) by the commit loop, as this may run inside a turn's hook."""
        if self._forget(owned):
            log.error("worker %s: actor %s failed: %s", self.worker_id, owned.actor_id, why)
            assert self._committer is not None
            self._committer.fail_later(owned, why)

    def _fail_now(self, actor: Actor, reason: str) -> None:
        owned = self._owned.get(actor.id)
        if owned is not None:
            self._fail(owned, reason)

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



class _CommitHooks:
    """What the committer asks of its worker (kept off the Worker's public face)."""

    __slots__ = ("_worker",)

    def __init__(self, worker: Worker) -> None:
        self._worker = worker

    def drop(self, owned: Owned, why: str) -> None:
        self._worker._drop(owned, why)

    def fail(self, owned: Owned, why: str) -> None:
        self._worker._fail(owned, why)

    def evict_failed(self, owned: Owned) -> None:
        self._worker._evict(owned)

    def landed(self, owned: Owned) -> None:
        self._worker._feed(owned)

    def work_due_ms(self, due: float) -> int:
        leases = self._worker._leases
        assert leases is not None
        return leases.work_due_ms(due)


__all__ = ["ImportTables", "Worker"]

"""``HandOver``: how a worker gives actors back to Redis: an idle or shed actor (the rules are
:class:`~.release.Releases`'), an actor at an upgrade barrier, and every actor at a graceful close.
Each goes out of the runtime first, then in one releasing commit.
"""

from __future__ import annotations

import json
import logging

import anyio
import anyio.abc

from ..actors import ActorRecord
from .committer import Committer
from .crash import snapshot_point
from .lease import Leases
from .owned import Owned
from .release import Releases
from .stats import WorkerStats
from .wire import UPGRADE_BARRIER

log = logging.getLogger("mvactors")


class HandOver:
    """The release half of :class:`~.worker.Worker` (a base class: the worker owns the state below)."""

    worker_id: str
    _owned: dict[str, Owned]
    _stats: WorkerStats
    _tg: anyio.abc.TaskGroup | None
    _leases: Leases | None
    _committer: Committer | None
    _releases: Releases | None

    # (the worker's side of one actor, which a release ends)
    def _fail(self, owned: Owned, why: str) -> None:
        raise NotImplementedError

    def _evict(self, owned: Owned) -> ActorRecord | None:
        raise NotImplementedError

    def _forget(self, owned: Owned) -> bool:
        raise NotImplementedError

    def _at_barrier(self, owned: Owned) -> None:
        """An upgrade's mail is next: once every turn before it is committed and the actor awaits no host
        call or timer, hand it back to Redis paused (reason "upgrade"); the client that sent the upgrade
        applies it there (``Client.upgrade``), fenced by the epoch, and resumes it."""
        if owned.submitted or owned.committing or owned.uncommitted or owned.awaiting_host or owned.gone:
            return
        if owned.next_due is not None or (owned.actor is not None and owned.actor.awaiting()):
            return  # (a timer, or an async export's promise: it waits; the client's timeout names them)
        assert self._leases is not None
        owned.pause = json.dumps({"reason": "upgrade", "since": round(self._leases.redis_time(), 3),
                                  "detail": "an upgrade is being applied at this turn boundary",
                                  "message_id": owned.buffer[0].message_id})
        records = self._take_out([owned])
        if records:
            assert self._tg is not None
            self._tg.start_soon(self._release, records, "an upgrade is next in its mailbox")

    def _release_quiet(self) -> None:
        """Hand quiet actors back to Redis as :class:`~.release.Releases` rules (each discovery pass)."""
        leases, releases = self._leases, self._releases
        if leases is None or releases is None or leases.redis_full:
            return  # a releasing commit would be refused: keep them, leased, until memory is freed
        candidates = []
        for owned in list(self._owned.values()):
            if owned.buffer and owned.buffer[0].export_id == UPGRADE_BARRIER:
                self._at_barrier(owned)  # (its host call or timer may have completed since)
            else:
                candidates.append(owned)
        for owned, why in releases.due(candidates):
            records = self._take_out([owned])
            if records:
                assert self._tg is not None
                self._tg.start_soon(self._release, records, why)

    def _take_out(self, batch: list[Owned]) -> dict[Owned, tuple[ActorRecord, str]]:
        """Evict actors from the runtime (no turn runs after this) for a final, releasing commit."""
        records: dict[Owned, tuple[ActorRecord, str]] = {}
        for owned in batch:
            if owned.gone or owned.committing:
                continue
            try:
                snapshot_point(owned.actor_id)
            except Exception as exc:  # its record cannot be taken: it fails, the others are handed over
                self._fail(owned, f"its record could not be taken: {type(exc).__name__}: {exc}")
                continue
            # Before the eviction answers the waiting callers with ActorEvicted here.
            settling = "" if owned.actor is None else owned.settling_refs(owned.actor)
            record = self._evict(owned)
            actor = owned.actor
            if record is None and actor is not None and actor.failure is not None:
                # Its VM failed while the runtime took its record: it fails, the others are handed over.
                self._fail(owned, f"its record could not be taken: {actor.failure}")
                continue
            self._forget(owned)
            if record is not None:
                records[owned] = record, settling
        return records

    async def _release(self, records: dict[Owned, tuple[ActorRecord, str]], why: str = "idle") -> None:
        assert self._committer is not None
        await self._committer.commit(list(records), release=True, records=records)
        self._stats.released += len(records)
        # One line per batch, naming each actor (a log record per actor was a few % of a busy worker's CPU).
        # (each actor keeps its "released actor <id> (<why>)" phrase, for grep)
        log.info("worker %s %s", self.worker_id,
                 "; ".join(f"released actor {owned.actor_id} ({why})" for owned in records))

    async def _hand_over_all(self, quiesce_s: float) -> None:
        """Graceful close: commit every actor as it is now and release its lease.  An actor whose
        commit is still in flight after ``quiesce_s`` is left to its lease's lapse."""
        assert self._committer is not None and self._leases is not None
        # A commit in flight must land before the releasing one.  (The leases are still renewed
        # meanwhile: the renewal task runs until the worker's task group ends.)
        with anyio.move_on_after(quiesce_s):
            await self._committer.quiesce()
        records = self._take_out([o for o in self._owned.values() if not o.gone])
        if records:
            await self._release(records, "the worker is closing")
        await self._leases.leave()
        log.info("worker %s handed over %d actors", self.worker_id, len(records))

"""Leases: who may run an actor, for how long, under which fencing epoch.

A :class:`Lease` is one actor's lease as this worker holds it (in the spirit of redis-py's
asyncio ``Lock``: a small object beside the server-side functions that take and renew it,
``mva_acquire`` and ``mva_renew``).  :class:`Leases` is the worker's component that keeps
them: the heartbeat (live workers, Redis's clock), renewals every quarter TTL, and the
lost-lease callback.  Fencing does not rest on the lease: every write checks the epoch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio

from .keys import WORKER_LOAD, WORKERS, ActorKeys, worker_info_key
from .link import OUT_OF_MEMORY, UNREACHABLE, RedisLink
from .wire import Acquired, CorruptState, NotAcquired, acquire_args, decode_acquire, renew_args, renewed, text

AcquireResult = Acquired | NotAcquired | CorruptState | Exception

log = logging.getLogger("mvactors")


@dataclass(eq=False, slots=True)
class Lease:
    """This worker's lease on one actor: ``epoch`` fences its writes; ``ok_at`` is the monotonic time
    the last successful acquire/renew was sent (Redis counts the TTL from a moment after it)."""

    keys: ActorKeys
    epoch: str
    ok_at: float

    def fresh(self, safe: float) -> bool:
        """Renewed within ``safe`` seconds: a commit may still go out under it."""
        return time.monotonic() - self.ok_at < safe


class Leases:
    """Heartbeat, renewals and the clock offset of one worker; ``on_lost(holder, why)`` drops an actor
    whose lease is, or may be, gone.

    ``held`` is the worker's owned set (read, never changed here); ``info()`` what each heartbeat
    publishes about the worker (``Client.workers()`` reads it).
    """

    def __init__(self, link: RedisLink, worker_id: str, lease_ms: int, held: Mapping[str, Any],
                 on_lost: Callable[[Any, str], None],
                 info: Callable[[], Mapping[str, str | int | float]] | None = None) -> None:
        self.link = link
        self.worker_id = worker_id
        self.lease_ms = lease_ms
        # Stop committing this long after a lease was last renewed (Redis TTLs are not monotonic):
        # 80% of the TTL leaves 20% (400 ms at the default 2 s) for clock drift and the commit's trip.
        self.safe = lease_ms / 1000 * 0.8
        self.peers = 1  # live workers on this Redis, from their heartbeats
        self.held_by_others = 0  # actors the other live workers held at their last heartbeats
        self.beats = 0  # heartbeats answered (a fresh view of the others' loads each)
        self.clock_offset = 0.0  # Redis's clock minus this machine's wall clock, in seconds
        self._held = held
        self._on_lost = on_lost
        self._info = info
        self._stopping = False
        self._full_beats = 0  # heartbeats in a row that Redis refused as OOM

    # ---- the clock ----

    def redis_time(self) -> float:
        """Now on Redis's clock, in seconds since the epoch.

        The work index holds lease expiries that Redis computed (TIME, in the functions): a worker
        comparing them with a clock of its own that runs behind would take a dead worker's actors over
        that much late (ahead: it would try too early, every scan).  The offset is measured at each
        heartbeat; timers still fire on the wall clock of the worker running the actor.
        """
        return time.time() + self.clock_offset

    def work_due_ms(self, due: float) -> int:
        """A timer's due time (this machine's wall clock) as a work-index score (Redis's clock)."""
        return int((due + self.clock_offset) * 1000) if due > 0 else 0

    async def _measure_clock(self) -> None:
        before = time.time()
        answer: Any = await self.link.redis.time()
        after = time.time()
        if isinstance(answer, dict):  # a cluster client may answer per node
            answer = next(iter(answer.values()))
        seconds, micros = answer
        self.clock_offset = int(seconds) + int(micros) / 1e6 - (before + after) / 2

    # ---- heartbeat ----

    async def heartbeat(self) -> None:
        """Say this worker is alive; count the live ones (for a fair share of unowned actors)."""
        await self._measure_clock()
        now = self.redis_time()
        pipe = self.link.redis.pipeline(transaction=False)
        pipe.zadd(WORKERS, {self.worker_id: now})
        pipe.zremrangebyscore(WORKERS, "-inf", now - 3 * self.lease_ms / 1000)
        pipe.zrange(WORKERS, 0, -1)
        pipe.zadd(WORKER_LOAD, {self.worker_id: len(self._held)})
        pipe.zrange(WORKER_LOAD, 0, -1, withscores=True)
        if self._info is not None:
            # Expires with the heartbeat (3 TTLs), as the live set forgets the worker.
            key = worker_info_key(self.worker_id)
            pipe.hset(key, mapping={k: v for k, v in self._info().items()})  # type: ignore[misc]
            pipe.pexpire(key, 3 * self.lease_ms)
        said, _, live, _, loads, *_info = await pipe.execute(raise_on_error=False)
        if isinstance(said, OUT_OF_MEMORY):
            # A full Redis: the others may count this worker out (it only skews their fair share);
            # its leases still renew (mva_renew is allow-oom).  Logged about once per 10 s.
            self._full_beats += 1
            if self._full_beats % 20 == 1:
                log.warning("worker %s: Redis is full (%s); holding %d actors, committing nothing until memory "
                            "is freed", self.worker_id, said, len(self._held))
        else:
            if self._full_beats:
                log.warning("worker %s: Redis takes writes again", self.worker_id)
            self._full_beats = 0
        for answer in (said, live, loads, *_info):
            if isinstance(answer, Exception) and not isinstance(answer, OUT_OF_MEMORY):
                raise answer
        alive = {text(w) for w in live}
        self.peers = max(1, len(alive))
        self.held_by_others = sum(int(n) for w, n in loads if text(w) in alive and text(w) != self.worker_id)
        self.beats += 1
        gone = [w for w, _ in loads if text(w) not in alive]
        if gone:  # the load of workers whose heartbeat aged out (a crash, or a full Redis that refused leave())
            await self.link.redis.zrem(WORKER_LOAD, *gone)

    def fair_share(self) -> int:
        """This worker's share of the actors the live workers hold (rounded up)."""
        return -(-(self.held_by_others + len(self._held)) // self.peers)

    @property
    def redis_full(self) -> bool:
        """The last heartbeat was refused with OOM (Redis is full)."""
        return self._full_beats > 0

    async def leave(self) -> None:
        """Take this worker out of the live set (else its heartbeat ages out in 3 TTLs)."""
        try:
            await self.link.redis.zrem(WORKERS, self.worker_id)
            await self.link.redis.zrem(WORKER_LOAD, self.worker_id)
            await self.link.redis.delete(worker_info_key(self.worker_id))
        except UNREACHABLE:
            pass  # its heartbeat ages out

    # ---- acquire ----

    async def acquire(self, keys: list[ActorKeys]) -> list[tuple[ActorKeys, AcquireResult]]:
        """Try to lease each actor (one pipeline); per actor, the decoded reply, CorruptState for a
        lease taken on state that does not decode, or the error Redis gave."""
        def build(pipe: Any) -> None:
            for k in keys:
                pipe.fcall("mva_acquire", *acquire_args(k, self.worker_id, self.lease_ms))

        raw = await self.link.pipeline_once(build)
        out: list[tuple[ActorKeys, AcquireResult]] = []
        for k, one in zip(keys, raw, strict=True):
            if isinstance(one, Exception):
                out.append((k, one))
                continue
            try:
                out.append((k, decode_acquire(one)))
            except CorruptState as exc:
                out.append((k, exc))
        return out

    # ---- renewals ----

    async def run(self) -> None:
        """Heartbeat and renew every quarter TTL until shut down."""
        interval = self.lease_ms / 1000 / 4
        while not self._stopping:
            try:
                await self.heartbeat()
            except UNREACHABLE:
                pass  # the renewals below log it
            await anyio.sleep(interval)
            await self.renew(self._held.values())

    def notify_shutdown(self) -> None:
        """Stop after the current round (a graceful close hands the actors over first)."""
        self._stopping = True

    async def renew(self, holders: Iterable[Any]) -> None:
        """Drop the holders whose lease went stale, renew the others (one call per partition)."""
        batch = []
        for holder in list(holders):
            if not holder.lease.fresh(self.safe):
                self._on_lost(holder, "its lease was not renewed in time")
            elif not holder.gone:
                batch.append(holder)
        if not batch:
            return
        groups: dict[str, list[Any]] = {}
        for holder in batch:
            groups.setdefault(holder.lease.keys.tag, []).append(holder)
        sent = time.monotonic()

        def build(pipe: Any) -> None:
            for members in groups.values():
                pipe.fcall("mva_renew", *renew_args([(h.lease.keys, h.lease.epoch) for h in members],
                                                    self.worker_id, self.lease_ms))
        try:
            results = await self.link.pipeline_once(build)
        except UNREACHABLE as exc:
            log.warning("worker %s: Redis unreachable while renewing leases (%s)", self.worker_id, exc)
            return
        for members, result in zip(groups.values(), results, strict=True):
            if isinstance(result, Exception):
                continue
            for holder, ok in zip(members, renewed(result), strict=True):
                if ok:
                    holder.lease.ok_at = max(holder.lease.ok_at, sent)
                else:
                    self._on_lost(holder, "another worker holds its lease")

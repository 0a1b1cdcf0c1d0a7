"""``Discovery``: how a worker finds work — wake-up hints, scans of the work index, acquiring
leases on actors that need an owner, and reading the mail of the actors it owns.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from collections.abc import Set as AbstractSet
from typing import Any

import anyio

from .keys import HINT_FREE, PARTITIONS, ActorKeys, hint_key, partition_tag, ready_key, work_key
from .lease import Leases
from .link import BACKOFF_MAX, BACKOFF_MIN, OUT_OF_MEMORY, UNREACHABLE, RedisLink
from .owned import Owned
from .wire import Acquired, CorruptState, fetch_args, fetched, taken_ready, text

log = logging.getLogger("mvactors")

POLL_INTERVAL = 0.1  # seconds between full scans of the work index (hints wake it sooner)
HINT_BLOCK_MS = 1000  # a hint read blocks this long (its pool's socket timeout is longer)
FETCH_COUNT = 256  # mailbox entries read per actor per call
_ACQUIRE_PER_SCAN = 1024  # actors acquired per scan at most (one pipeline)
_CANDIDATES_PER_PARTITION = 256

# (keys, what Redis gave, monotonic time the acquire was sent) -> adopted into the runtime (or failed)
# adopt(keys, result, sent) -> "adopted actor <id> (turn N)" for an ordinary adoption, which acquire() logs with the
# others of its batch in one line (a log record per actor was ~6% of a busy worker's CPU), else None
Adopt = Callable[[ActorKeys, Acquired | CorruptState, float], Awaitable[str | None]]


class Discovery:
    """Finds actors for one worker and feeds it their mail.

    ``held`` is the worker's owned set and ``failing`` the actors whose failure it has yet to write
    (both read here, neither acquired); ``yielded`` the actors it shed to balance load, each with the
    monotonic time before which it leaves them to other workers; ``limit()`` its current cap on actors (None:
    none); ``adopt`` runs an acquired actor; ``feed(owned)`` hands read mail to the actor;
    ``each_pass()`` runs after every round (the worker releases quiet actors there).
    """

    def __init__(self, link: RedisLink, worker_id: str, leases: Leases, held: Mapping[str, Owned],
                 failing: AbstractSet[str], yielded: Mapping[str, float], limit: Callable[[], int | None], adopt: Adopt,
                 feed: Callable[[Owned], None], each_pass: Callable[[], None]) -> None:
        self.link = link
        self.worker_id = worker_id
        self.leases = leases
        self.acquiring: set[str] = set()
        self._held = held
        self._failing = failing
        self._yielded = yielded
        self._limit = limit
        self._adopt = adopt
        self._feed = feed
        self._each_pass = each_pass
        self._want_acquire: set[str] = set()
        self._want_fetch: set[Owned] = set()
        self._wake = anyio.Event()
        self._stopping = False
        self._full_until = 0.0  # monotonic time before which acquiring waits (Redis said OOM)
        self._full_refusals = 0

    def want_fetch(self, owned: Owned) -> None:
        """Read more of ``owned``'s mailbox soon."""
        self._want_fetch.add(owned)
        self._wake.set()

    def notify_shutdown(self) -> None:
        """Acquire nothing more; the loops end with the worker's task group."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        """The hint reader and the scan loop, until cancelled."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._hints)
            await self._scans()
            tg.cancel_scope.cancel()

    def room(self) -> int:
        """How many more actors this worker may acquire now."""
        limit = self._limit()
        if limit is None:
            return _ACQUIRE_PER_SCAN
        return min(_ACQUIRE_PER_SCAN, limit - len(self._held) - len(self.acquiring))

    # ---- hints ----

    async def _hints(self) -> None:
        blocking = self.link.blocking
        mine = hint_key(self.worker_id)
        last = {mine: "$", HINT_FREE: "$"}
        delay = BACKOFF_MIN
        while True:
            try:
                got: Any = await blocking.xread(dict(last), count=1000, block=HINT_BLOCK_MS)  # type: ignore[arg-type]
                delay = BACKOFF_MIN
            except UNREACHABLE:
                # (its own loop: a blocking read cannot share the link's retry, which would re-block)
                await anyio.sleep(delay)
                delay = min(BACKOFF_MAX, delay * 2)
                continue
            streams = got.items() if isinstance(got, dict) else got or []
            for key, entries in streams:
                key = text(key)
                entries = entries[0] if isinstance(got, dict) else entries
                for entry_id, fields in entries:
                    last[key] = text(entry_id)
                    actor_id = text(fields.get(b"a", b""))
                    owned = self._held.get(actor_id)
                    if owned is not None:
                        owned.more_mail = True
                        self._want_fetch.add(owned)
                    elif key == HINT_FREE:
                        self._want_acquire.add(actor_id)
            self._wake.set()

    # ---- scans ----

    async def _scans(self) -> None:
        next_scan = 0.0
        while not self._stopping:
            now = time.monotonic()
            if now >= next_scan:
                more = await self.link.retrying("scanning for work", self._scan)
                next_scan = time.monotonic() + (0.0 if more else POLL_INTERVAL)
            if self._want_acquire:
                wanted, self._want_acquire = self._want_acquire, set()
                await self.acquire(list(wanted))
            if self._want_fetch:
                await self._fetch()
            self._each_pass()
            if not self._want_acquire and not self._want_fetch:
                with anyio.move_on_after(max(0.0, next_scan - time.monotonic())):
                    await self._wake.wait()
                self._wake = anyio.Event()

    async def _scan(self) -> bool:
        """One pass over every partition: new mail at owned actors, and actors that need an owner.

        True when there may be more to acquire right away (a partition filled its batch)."""
        now_ms = int(self.leases.redis_time() * 1000)
        room = self.room()
        tags = [partition_tag(i) for i in range(PARTITIONS)]
        random.shuffle(tags)  # workers scanning at once start at different partitions
        pipe = self.link.redis.pipeline(transaction=False)
        for tag in tags:
            pipe.fcall("mva_take_ready", 1, ready_key(tag), self.worker_id, FETCH_COUNT)
            if room > 0:
                pipe.zrangebyscore(work_key(tag), "-inf", now_ms, start=0, num=_CANDIDATES_PER_PARTITION)
        results = await pipe.execute()
        candidates: list[str] = []
        full = False
        step = 2 if room > 0 else 1
        for i in range(0, len(results), step):
            for actor_id in taken_ready(results[i]):
                owned = self._held.get(actor_id)
                if owned is not None:
                    owned.more_mail = True
                    self._want_fetch.add(owned)
            if room > 0:
                full = full or len(results[i + 1]) == _CANDIDATES_PER_PARTITION
                candidates.extend(text(a) for a in results[i + 1] if text(a) not in self._held)
        if candidates:
            random.shuffle(candidates)
            # Take a fair share: the other live workers scan too (the rest is left for the next scan).
            share = -(-len(candidates) // max(1, self.leases.peers))
            await self.acquire(candidates[:max(min(room, share), 0)])
        return full or len(candidates) > room

    # ---- acquiring ----

    async def acquire(self, actor_ids: list[str]) -> None:
        """Lease and adopt those of ``actor_ids`` this worker has room for."""
        if self._stopping:
            return
        if time.monotonic() < self._full_until:
            return
        now = time.monotonic()
        actor_ids = [a for a in actor_ids if a not in self._held and a not in self.acquiring
                     and a not in self._failing and self._yielded.get(a, 0.0) <= now][:max(self.room(), 0)]
        if not actor_ids:
            return
        self.acquiring.update(actor_ids)
        try:
            sent = time.monotonic()
            try:
                results = await self.leases.acquire([ActorKeys.of(a) for a in actor_ids])
            except UNREACHABLE as exc:
                log.warning("worker %s: Redis unreachable while acquiring (%s)", self.worker_id, exc)
                return
            full = 0
            adopted: list[str] = []
            try:
                for keys, result in results:
                    if isinstance(result, (Acquired, CorruptState)):
                        note = await self._adopt(keys, result, sent)
                        if note is not None:
                            adopted.append(note)
                    elif isinstance(result, OUT_OF_MEMORY):
                        full += 1
                    elif isinstance(result, Exception):
                        log.warning("worker %s: acquiring %s failed: %s", self.worker_id, keys.actor_id, result)
            finally:
                if adopted:
                    log.info("worker %s %s", self.worker_id, "; ".join(adopted))
            if full:
                # Redis is full (it refused before writing): try again in a second, not every scan,
                # and say so about once a minute (60 refusals at one per second).
                self._full_until = time.monotonic() + BACKOFF_MAX
                self._full_refusals += 1
                if self._full_refusals % 60 == 1:
                    log.warning("worker %s: Redis is full (OOM): acquires nothing until memory is freed "
                                "(%d actors waiting)", self.worker_id, full)
            else:
                self._full_refusals = 0
        finally:
            self.acquiring.difference_update(actor_ids)

    # ---- mail ----

    async def _fetch(self) -> None:
        batch = [o for o in self._want_fetch if not o.gone and not o.buffer]
        self._want_fetch.clear()
        if not batch:
            return
        by_partition: dict[str, list[Owned]] = {}
        for owned in batch:
            by_partition.setdefault(owned.keys.tag, []).append(owned)

        def build(pipe: Any) -> None:
            for members in by_partition.values():
                pipe.fcall("mva_fetch", *fetch_args([(o.keys.mailbox, o.read_pos) for o in members], FETCH_COUNT))
        try:
            pipe = self.link.redis.pipeline(transaction=False)
            build(pipe)
            results = await pipe.execute()
        except UNREACHABLE as exc:
            log.warning("worker %s: Redis unreachable while reading mail (%s)", self.worker_id, exc)
            self._want_fetch.update(batch)
            await anyio.sleep(BACKOFF_MIN)
            return
        for members, blob in zip(by_partition.values(), results, strict=True):
            for owned, entries in zip(members, fetched(blob), strict=True):
                if owned.gone:
                    continue
                owned.buffer.extend(entries)
                if entries:
                    owned.read_pos = entries[-1].stream_id
                owned.more_mail = len(entries) == FETCH_COUNT
                self._feed(owned)

"""The inventory: which actors and workers there are, read from the indexes (``Client.actors``,
``Client.counts``, ``Client.workers`` and the dashboard).
"""

from __future__ import annotations

import collections
import heapq
from collections.abc import AsyncIterator
from typing import Any

from .keys import PARTITIONS, WORKERS, ActorKeys, all_key, failed_key, partition_tag, paused_key, worker_info_key
from .link import RedisLink
from .wire import Described, inventoried, inventory_args, text

# IDs read per partition per ZRANGE BYLEX of ``actors()`` (32 partitions x 256 = 8,192 per pipeline), and
# the most actors one round describes (one mva_inventory per partition, pipelined): a walk over
# every actor moves 8,192 per round trip pair, as it did before pages had a size.
_PAGE = 256
_ROUND = PARTITIONS * _PAGE
STATES = ("idle", "running", "paused", "failed")


async def actors(link: RedisLink, state: str | None = None, imports: str | None = None, owner: str | None = None,
                 code: str | None = None, *, limit: int | None = None,
                 after: str | None = None) -> AsyncIterator[dict[str, Any]]:
    """:meth:`Client.actors` (its docstring says what each argument does), on ``link``."""
    if state is not None and state not in STATES:
        raise ValueError(f"state must be one of {', '.join(STATES)} or None, not {state!r}")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise ValueError(f"limit must be an int >= 1 or None, not {limit!r}")
    if after is not None and not isinstance(after, str):
        raise ValueError(f"after must be an actor ID (a str) or None, not {after!r}")
    index = failed_key if state == "failed" else paused_key if state == "paused" else all_key
    filtered = state in ("idle", "running") or imports is not None or owner is not None or code is not None
    left = limit
    # Actors described per round: the page asked for, doubling while filters reject rows (a rare
    # owner among 100,000 then takes ~13 rounds of up to 8,192, not 2,000 of 50).
    want = min(limit, _ROUND) if limit is not None else _ROUND
    # Per partition: the lex bound its next ZRANGE reads from (absent: read to its end), and the
    # IDs read but not yet described.  An ID is described only once every partition that may hold
    # a smaller one has a smaller-or-equal ID buffered, so the stream is in global ID order.
    start = b"-" if after is None else b"(" + after.encode("utf-8")
    bounds: dict[str, bytes] = {partition_tag(i): start for i in range(PARTITIONS)}
    buffered: dict[str, collections.deque[bytes]] = {tag: collections.deque() for tag in bounds}
    while True:
        fetch = min(want, _PAGE)
        # Top up every partition below one read's worth, not only the empty ones: a round then
        # takes at least `fetch` IDs (a full walk ~7,000+ per round), never a few at a time.
        empty = [tag for tag in bounds if len(buffered[tag]) < fetch]
        if empty:

            def ranges(pipe: Any, tags: list[str] = empty, fetch: int = fetch) -> None:
                for tag in tags:
                    pipe.zrangebylex(index(tag), bounds[tag], "+", start=0, num=fetch)

            pages = await link.guarded(lambda: link.pipeline_once(ranges))
            for tag, page in zip(empty, pages, strict=True):
                if isinstance(page, Exception):
                    raise page
                members = [bytes(m) for m in page]
                if len(members) < fetch:
                    del bounds[tag]
                else:
                    bounds[tag] = b"(" + members[-1]
                buffered[tag].extend(members)
        heads = [(queue[0], tag) for tag, queue in buffered.items() if queue]
        heapq.heapify(heads)
        taken: dict[str, list[ActorKeys]] = {}
        order: list[str] = []
        while heads and len(order) < want:
            member, tag = heapq.heappop(heads)
            queue = buffered[tag]
            queue.popleft()
            actor_id = text(member)
            order.append(actor_id)
            taken.setdefault(tag, []).append(ActorKeys(actor_id, tag))
            if queue:
                heapq.heappush(heads, (queue[0], tag))
            elif tag in bounds:
                break  # its unread IDs may sort before the other partitions' next ones: read them first
        if not order:
            return
        groups = list(taken.values())

        def describe_all(pipe: Any, groups: list[list[ActorKeys]] = groups) -> None:
            for keys in groups:
                pipe.fcall("mva_inventory", *inventory_args(keys))

        blobs = await link.guarded(lambda: link.pipeline_once(describe_all))
        found: dict[str, Described] = {}
        for blob in blobs:
            if isinstance(blob, Exception):
                raise blob
            found.update(inventoried(blob))
        rejected = False
        for actor_id in order:
            info = found.get(actor_id)
            if info is None:
                continue  # deleted since its ID was read
            if ((state is not None and info.state != state) or (imports is not None and info.imports != imports)
                    or (owner is not None and info.owner != owner)
                    or (code is not None and not info.code.startswith(code))):
                rejected = True
                continue
            yield {"id": actor_id, **info.public()}
            if left is not None:
                left -= 1
                if left == 0:
                    return
        if filtered and rejected:
            want = min(want * 2, _ROUND)

async def counts(link: RedisLink) -> dict[str, int]:
    """:meth:`Client.counts`, on ``link``."""
    tags = [partition_tag(i) for i in range(PARTITIONS)]

    def cards(pipe: Any) -> None:
        for tag in tags:
            pipe.zcard(all_key(tag))
            pipe.zcard(failed_key(tag))
            pipe.zcard(paused_key(tag))
            pipe.zintercard(2, [failed_key(tag), paused_key(tag)])

    replies = await link.guarded(lambda: link.pipeline_once(cards))
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    total, failed, paused, both = (sum(int(r) for r in replies[k::4]) for k in range(4))
    return {"total": total, "failed": failed, "paused": paused - both}

async def workers(link: RedisLink) -> list[dict[str, Any]]:
    """:meth:`Client.workers`, on ``link``."""
    seen: list[tuple[bytes, float]] = await link.guarded(
        lambda: link.redis.zrange(WORKERS, 0, -1, withscores=True))  # type: ignore[arg-type,return-value]
    ids = [text(member) for member, _ in seen]

    def infos(pipe: Any) -> None:
        for worker_id in ids:
            pipe.hgetall(worker_info_key(worker_id))

    rows = await link.guarded(lambda: link.pipeline_once(infos)) if ids else []
    out = []
    for (worker_id, (_, at)), row in zip(zip(ids, seen, strict=True), rows, strict=True):
        fields = {} if isinstance(row, Exception) else {text(k): text(v) for k, v in row.items()}
        out.append({
            "id": worker_id,
            "host": fields.get("host"),
            "pid": int(fields["pid"]) if "pid" in fields else None,
            "actors": int(fields.get("actors", 0)),
            "turns": int(fields.get("turns", 0)),
            "started": float(fields["started"]) if "started" in fields else None,
            "seen": float(at),
        })
    return out

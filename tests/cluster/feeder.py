"""A client process for the fault tests: ``feeder.py URL SENDER N ACTOR...``.

Sends ``add(SENDER, seq)`` for seq 1..N to every actor, awaiting each send before the
next (one sender, in order).  A send that fails because Redis is unreachable is retried
with the same message ID until it succeeds, so each message is accepted exactly once.
"""

from __future__ import annotations

import sys

import anyio

import mvactors
from mvactors.cluster import RedisUnreachable


async def feed(url: str, sender: str, count: int, actors: list[str]) -> None:
    async with mvactors.connect(url) as client:
        for seq in range(1, count + 1):
            for actor_id in actors:
                while True:
                    try:
                        await client.send(actor_id, 1, sender, seq, message_id=f"{sender}:{actor_id}:{seq}")
                        break
                    except RedisUnreachable:
                        await anyio.sleep(0.05)
    print(f"fed {sender}", flush=True)


if __name__ == "__main__":
    url, sender, count, *actor_ids = sys.argv[1:]
    anyio.run(feed, url, sender, int(count), actor_ids)

"""A client process for the fault tests: ``feeder.py URL SENDER N ACTOR...``.

Sends ``add(SENDER, seq)`` for seq 1..N to every actor, awaiting each send before the
next (one sender, in order).  A send that fails because Redis is unreachable (or, with
replica_acks, not confirmed by the replicas in time) is retried with the same message ID
until it succeeds, so each message is accepted exactly once.

``$MVACTORS_TEST_REPLICA_ACKS``: the client's ``replica_acks``.  ``$MVACTORS_FEEDER_LOG``: use
``call`` instead of ``send`` and append ``SENDER ACTOR SEQ VALUE`` to that file for every
reply received (the counter value the turn handed out), so a test can check that no value
was handed out twice.
"""

from __future__ import annotations

import os
import sys

import anyio

import mvactors
from mvactors.cluster import RedisUnreachable


async def feed(url: str, sender: str, count: int, actors: list[str]) -> None:
    log_path = os.environ.get("MVACTORS_FEEDER_LOG")
    acks = int(os.environ.get("MVACTORS_TEST_REPLICA_ACKS", "0"))
    async with mvactors.connect(url, replica_acks=acks) as client:
        for seq in range(1, count + 1):
            for actor_id in actors:
                message_id = f"{sender}:{actor_id}:{seq}"
                while True:
                    try:
                        if log_path is None:
                            await client.send(actor_id, 1, sender, seq, message_id=message_id)
                        else:
                            value = await client.call(actor_id, 1, sender, seq, message_id=message_id, timeout=5)
                            with open(log_path, "a", encoding="utf-8") as log:
                                log.write(f"{sender} {actor_id} {seq} {value}\n")
                        break
                    except (RedisUnreachable, TimeoutError):
                        await anyio.sleep(0.05)
    print(f"fed {sender}", flush=True)


if __name__ == "__main__":
    url, sender, count, *actor_ids = sys.argv[1:]
    anyio.run(feed, url, sender, int(count), actor_ids)

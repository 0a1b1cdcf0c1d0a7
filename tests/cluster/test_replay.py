"""Replay after a crash with ``--checkpoint-every N > 1``: turns since the last commit run again from
the mailbox stream, mixed with journaled host calls and timers, and the outcome is still exact.

The worker dies at a turn the test picks (``MVACTORS_CRASH_AT=after-turn:K``), not at a time.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis

import mvactors
from mvactors.cluster import Client
from mvactors.cluster.crash import CRASH_EXIT_CODE
from mvactors.cluster.keys import ActorKeys

from .cluster_hosts import IMPORTS
from .processes import eventually, worker

pytestmark = pytest.mark.anyio

FLAGS = ["--lease-ms", "600", "--checkpoint-every", "5"]


@pytest.fixture
def actor_snapshot(snapshot: Callable[[str], bytes]) -> bytes:
    return snapshot("cluster_actor")


def workload(messages: int) -> tuple[list[tuple[Any, ...]], int, list[str], int]:
    """Adds from one sender with an order (a journaled charge, then a sleep every other time) after
    every third: (the messages as (message ID, export, args...), adds, order IDs, the turns they take)."""
    sends: list[tuple[Any, ...]] = []
    adds, orders, turns = 0, [], 0
    for i in range(1, messages + 1):
        if i % 3 == 0:
            order_id, ms = f"o{i}", 30 if i % 2 else 0
            sends.append((f"order-{i}", 3, order_id, ms))
            orders.append(order_id)
            turns += 3 if ms else 2  # the message, the charge's completion, the timer
        else:
            adds += 1
            sends.append((f"add-{adds}", 1, "s", adds))
            turns += 1
    return sends, adds, orders, turns


async def send_workload(client: Client, actor_id: str, messages: int) -> tuple[int, list[str], int]:
    sends, adds, orders, turns = workload(messages)
    for message_id, export_id, *args in sends:
        await client.send(actor_id, export_id, *args, message_id=message_id)
    return adds, orders, turns


def charges_by_order(log: Path) -> dict[tuple[str, str], set[str]]:
    """(actor, order) -> the idempotency keys its journaled charge ran with."""
    charges: dict[tuple[str, str], set[str]] = {}
    for line in log.read_text().splitlines():
        kind, order_id, key = line.split(" ", 2)
        if kind == "charge":
            charges.setdefault((key.split("/")[0], order_id), set()).add(key)
    return charges


@pytest.mark.parametrize("crash_after_turn", [3, 11, 13, 26])
async def test_replay_after_a_crash_mid_checkpoint_is_exact(redis_url: str, actor_snapshot: bytes, tmp_path: Path,
                                                           crash_after_turn: int) -> None:
    log = tmp_path / "effects.log"
    env = {"MVACTORS_TEST_LOG": str(log)}
    async with mvactors.connect(redis_url) as client:
        actor_id = await client.spawn(actor_snapshot, imports="counter", actor_id="replayed")
        # All mail is there before the first worker starts: it runs in checkpoint-sized batches.
        adds, orders, turns = await send_workload(client, actor_id, 30)
        with worker(redis_url, *FLAGS, env={**env, "MVACTORS_CRASH_AT": f"after-turn:{crash_after_turn}"}) as crashing:
            assert crashing.wait(30) == CRASH_EXIT_CODE, crashing.output()
        turns_at_crash = (await client.describe(actor_id))["turns"]
        assert turns_at_crash <= crash_after_turn
        with worker(redis_url, *FLAGS, env=env) as taker:
            async def finished() -> bool:
                info = await client.describe(actor_id)
                assert info["turns"] >= turns_at_crash and info["failed"] is None, info
                return info["turns"] >= turns

            await eventually(finished, 60, "every message, completion and timer to be committed")
            state: dict[str, Any] = await client.call(actor_id, 2, timeout=30)
            assert "non-determinism" not in taker.output()
        info = await client.describe(actor_id)
    assert info["failed"] is None
    assert info["turns"] == turns + 1  # not one turn more: nothing ran twice into the committed state
    assert state["problems"] == [] and state["count"] == adds and state["last"] == {"s": adds}
    assert sorted(state["done"]) == sorted(orders)
    # Each journaled charge ran for one call only (one idempotency key), whatever was replayed.
    charges = charges_by_order(log)
    assert {o: len(keys) for (_, o), keys in charges.items()} == {o: 1 for o in orders}, charges
    # ... and every replay of its continuation saw the recorded receipt.
    effects = {line.split(" ")[2] for line in log.read_text().splitlines() if line.startswith("effect charged ")}
    assert effects == set(orders)


async def test_a_journaled_call_runs_only_once_the_turn_that_made_it_is_committed(
        redis_url: str, actor_snapshot: bytes) -> None:
    # Run earlier, its journal entry could outlive its turn: a crash before that commit replays from
    # an older record, where the same token can go to another call.
    sync_redis = redis.Redis.from_url(redis_url)
    seen: list[tuple[str, int]] = []

    async def charge(order_id: str) -> str:
        # A blocking read: the event loop, and so the worker's commits, wait while it runs.
        seen.append((order_id, int(sync_redis.hget(ActorKeys.of("probe").state, "t") or 0)))
        return f"receipt-{order_id}"

    imports = {"counter": {**IMPORTS["counter"], 2: mvactors.journaled(charge)}}
    try:
        async with mvactors.Worker(redis_url, imports, checkpoint_every=5), \
                mvactors.connect(redis_url) as client:
            actor_id = await client.spawn(actor_snapshot, imports="counter", actor_id="probe")
            for i in range(1, 4):
                await client.send(actor_id, 1, "s", i)
            assert await client.call(actor_id, 3, "o1", 0, timeout=10) == "receipt-o1"
            assert await client.call(actor_id, 3, "o2", 0, timeout=10) == "receipt-o2"
    finally:
        sync_redis.close()
    # o1's message was the 4th turn, o2's the 6th (after o1's completion).
    assert [order for order, _ in seen] == ["o1", "o2"]
    assert seen[0][1] >= 4 and seen[1][1] >= 6, seen


async def test_random_kill_9_with_checkpoint_every_5_is_exact(redis_url: str, actor_snapshot: bytes,
                                                              tmp_path: Path) -> None:
    seed = int(os.environ.get("MVACTORS_KILL_SEED", "0")) or random.randrange(1 << 30)
    rng = random.Random(seed)
    log = tmp_path / "effects.log"
    env = {"MVACTORS_TEST_LOG": str(log)}
    sends, adds, orders, turns = workload(150)
    async with mvactors.connect(redis_url) as client:
        actors = [await client.spawn(actor_snapshot, imports="counter", actor_id=f"r{i}") for i in range(3)]
        workers = [worker(redis_url, *FLAGS, env=env) for _ in range(2)]
        try:
            async with anyio.create_task_group() as tg:
                async def feed() -> None:  # one sender per actor, each send awaited before the next
                    for n, (message_id, export_id, *args) in enumerate(sends):
                        for actor_id in actors:
                            await client.send(actor_id, export_id, *args, message_id=message_id)
                        if n % 5 == 4:
                            await anyio.sleep(0.02)  # a steady stream, not one burst (pacing load)

                tg.start_soon(feed)
                for _ in range(5):
                    victim = rng.randrange(len(workers))
                    workers[victim].wait_for("started")

                    async def some_progress() -> bool:
                        return sum([(await client.describe(a))["turns"] for a in actors]) > 0

                    await eventually(some_progress, 30, "turns to be committed")
                    await anyio.sleep(rng.uniform(0.05, 0.4))  # chaos: how long load runs before the kill
                    workers[victim].kill()
                    workers[victim] = worker(redis_url, *FLAGS, env=env)

            async def finished() -> bool:
                infos = [await client.describe(a) for a in actors]
                assert all(i["failed"] is None for i in infos), infos
                return all(i["turns"] >= turns for i in infos)

            await eventually(finished, 90, "every message, completion and timer to be committed")
            for actor_id in actors:
                state = await client.call(actor_id, 2, timeout=30)
                assert state["problems"] == [] and state["count"] == adds and state["last"] == {"s": adds}, state
                assert sorted(state["done"]) == sorted(orders), (actor_id, state["done"])
                assert (await client.describe(actor_id))["turns"] == turns + 1, actor_id
            assert not any("non-determinism" in w.output() for w in workers)
        finally:
            for p in workers:
                p.kill()
    charges = charges_by_order(log)
    assert {k: len(keys) for k, keys in charges.items()} == {(a, o): 1 for a in actors for o in orders}
    print(f"seed {seed}")

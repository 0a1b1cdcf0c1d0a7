"""Fault tests with real worker processes, real signals and a real redis-server.

Each asserts the final state exactly: every accepted message applied once, in each
sender's order, whatever happened to the workers (or to Redis) meanwhile.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable
from typing import Any

import anyio
import pytest

import mvactors
from mvactors.cluster import ActorFailedInRedis, Client
from mvactors.cluster.wire import REPLY_FAILED
from mvactors.testing import RedisServer, redis_cluster

from .failing import reply_of, send_wanting_reply
from .processes import REPLICA_ACKS, Process, eventually, feeder, worker

pytestmark = pytest.mark.anyio

LEASE = ["--lease-ms", "600"]


@pytest.fixture
def actor_snapshot(snapshot: Callable[[str], bytes]) -> bytes:
    return snapshot("cluster_actor")


async def spawn_counters(client: Client, snapshot: bytes, n: int) -> list[str]:
    return [await client.spawn(snapshot, imports="counter", actor_id=f"counter-{i}") for i in range(n)]


async def assert_exact(client: Client, actors: list[str], senders: list[str], count: int,
                       timeout: float = 60) -> None:
    """Wait until every message is applied, then check counts and per-sender order exactly."""
    total = len(senders) * count

    async def drained() -> bool:
        infos = [await client.describe(a) for a in actors]
        return all(i["mailbox"] == 0 and i["turns"] >= total for i in infos)

    await eventually(drained, timeout, "every mailbox to drain")
    for actor_id in actors:
        state = await client.call(actor_id, 2, timeout=30)
        assert state["problems"] == [], (actor_id, state["problems"][:5])
        assert state["count"] == total, (actor_id, state["count"], total)
        assert state["last"] == {s: count for s in senders}, (actor_id, state["last"])


def run_feeders(url: str, senders: list[str], count: int, actors: list[str]) -> list[Process]:
    return [feeder(url, sender, count, actors) for sender in senders]


def finish(feeders: list[Process]) -> None:
    for f in feeders:
        assert f.wait(120) == 0, f.output()


async def test_kill_9_workers_repeatedly(redis_url: str, actor_snapshot: bytes) -> None:
    seed = int(os.environ.get("MVACTORS_KILL_SEED", "0")) or random.randrange(1 << 30)
    rng = random.Random(seed)
    senders, count = ["s1", "s2", "s3"], 120
    async with mvactors.connect(redis_url) as client:
        actors = await spawn_counters(client, actor_snapshot, 4)
        workers = [worker(redis_url, *LEASE) for _ in range(2)]
        feeders = run_feeders(redis_url, senders, count, actors)
        try:
            for _ in range(6):
                victim = rng.randrange(len(workers))
                workers[victim].wait_for("started")

                async def some_progress() -> bool:
                    return sum([(await client.describe(a))["turns"] for a in actors]) > 0

                await eventually(some_progress, 30, "turns to be committed")
                await _sleep(rng.uniform(0.05, 0.4))
                workers[victim].kill()
                workers[victim] = worker(redis_url, *LEASE)
            finish(feeders)
            await assert_exact(client, actors, senders, count)
            epochs = [(await client.describe(a))["epoch"] for a in actors]
            assert sum(epochs) > len(actors), epochs  # actors did move between workers
        finally:
            for p in workers + feeders:
                p.kill()
        print(f"seed {seed} epochs {epochs}")


async def _sleep(seconds: float) -> None:
    await anyio.sleep(seconds)  # how long load runs before the next fault (chaos, not a wait)


async def test_sigstopped_worker_never_commits_after_its_lease_lapsed(redis_url: str, actor_snapshot: bytes) -> None:
    senders, count = ["s1", "s2"], 150
    async with mvactors.connect(redis_url) as client:
        actors = await spawn_counters(client, actor_snapshot, 2)
        with worker(redis_url, *LEASE, "--worker-id", "paused") as paused:
            feeders = run_feeders(redis_url, senders, count, actors)

            async def owned_by(name: str) -> bool:
                infos = [await client.describe(a) for a in actors]
                return all(i["owner"] == name for i in infos) and all(i["turns"] > 0 for i in infos)

            await eventually(lambda: owned_by("paused"), 30, "the first worker to own the actors")
            paused.signal(signal.SIGSTOP)
            with worker(redis_url, *LEASE, "--worker-id", "taker"):
                await eventually(lambda: owned_by("taker"), 30, "the second worker to take over")
                turns_taken = [(await client.describe(a))["turns"] for a in actors]
                paused.signal(signal.SIGCONT)
                finish(feeders)
                await assert_exact(client, actors, senders, count)
                assert [(await client.describe(a))["turns"] for a in actors] >= turns_taken
            paused.wait_for("drops actor")  # it noticed, and threw its state away


async def test_graceful_sigterm_hands_over_under_load(redis_url: str, actor_snapshot: bytes) -> None:
    senders, count = ["s1", "s2"], 150
    async with mvactors.connect(redis_url) as client:
        actors = await spawn_counters(client, actor_snapshot, 4)
        # The staying worker starts only once the leaving one owns actors: started
        # together, the staying one could take all four first.
        with worker(redis_url, *LEASE, "--worker-id", "leaving") as leaving:
            feeders = run_feeders(redis_url, senders, count, actors)

            async def leaving_owns_some() -> bool:
                return any([(await client.describe(a))["owner"] == "leaving" for a in actors])

            await eventually(leaving_owns_some, 30, "the leaving worker to own an actor")
            with worker(redis_url, *LEASE, "--worker-id", "staying"):
                leaving.signal(signal.SIGTERM)
                assert leaving.wait(30) == 0, leaving.output()
                assert "handed over" in leaving.output()
                finish(feeders)
                await assert_exact(client, actors, senders, count)


async def test_kill_9_redis_mid_load_and_restart_from_its_aof(redis_node: RedisServer, actor_snapshot: bytes) -> None:
    url = redis_node.url
    senders, count = ["s1", "s2"], 150
    async with mvactors.connect(url) as client:
        actors = await spawn_counters(client, actor_snapshot, 3)
        with worker(url, *LEASE), worker(url, *LEASE):
            feeders = run_feeders(url, senders, count, actors)

            async def some_progress() -> bool:
                return sum([(await client.describe(a))["turns"] for a in actors]) > 50

            await eventually(some_progress, 30, "turns to be committed")
            redis_node.kill()
            await _sleep(0.5)
            redis_node.start()
            finish(feeders)
            await assert_exact(client, actors, senders, count)


async def test_journaled_step_is_not_run_again_after_a_crash(redis_url: str, actor_snapshot: bytes,
                                                             tmp_path: Any) -> None:
    log = tmp_path / "effects.log"
    env = {"MVACTORS_TEST_LOG": str(log)}
    async with mvactors.connect(redis_url) as client:
        actor_id = await client.spawn(actor_snapshot, imports="counter")
        await client.send(actor_id, 3, "o1", 0)
        crashing = worker(redis_url, *LEASE, env={**env, "MVACTORS_CRASH_AT": "after-journal"})
        assert crashing.wait(30) == 70, crashing.output()  # died after journaling, before the guest saw it
        with worker(redis_url, *LEASE, env=env):
            async def done() -> Any:
                return (await client.call(actor_id, 2, timeout=30))["done"]

            assert await eventually(done, 30, "the order to complete") == ["o1"]
    lines = log.read_text().splitlines()
    assert lines == [f"charge o1 {actor_id}/1", "effect charged o1 receipt-o1"]


async def test_call_run_but_not_journaled_runs_again_with_the_same_idempotency_key(
        redis_url: str, actor_snapshot: bytes, tmp_path: Any) -> None:
    log = tmp_path / "effects.log"
    env = {"MVACTORS_TEST_LOG": str(log)}
    async with mvactors.connect(redis_url) as client:
        actor_id = await client.spawn(actor_snapshot, imports="counter")
        await client.send(actor_id, 3, "o1", 0)
        crashing = worker(redis_url, *LEASE, env={**env, "MVACTORS_CRASH_AT": "before-journal"})
        assert crashing.wait(30) == 70, crashing.output()  # charged, died before recording it
        # The new owner re-issues the call while adopting the record (a second crash point there).
        with worker(redis_url, *LEASE, env=env):
            async def done() -> Any:
                return (await client.call(actor_id, 2, timeout=30))["done"]

            assert await eventually(done, 30, "the order to complete") == ["o1"]
    lines = log.read_text().splitlines()
    assert lines == [f"charge o1 {actor_id}/1"] * 2 + ["effect charged o1 receipt-o1"]


async def test_pending_timer_fires_at_its_original_due_time_after_a_takeover(redis_url: str, actor_snapshot: bytes,
                                                                             tmp_path: Any) -> None:
    log = tmp_path / "effects.log"
    env = {"MVACTORS_TEST_LOG": str(log)}
    async with mvactors.connect(redis_url) as client:
        actor_id = await client.spawn(actor_snapshot, imports="counter")
        with worker(redis_url, *LEASE, env=env) as first:
            await client.send(actor_id, 3, "o2", 2000)

            async def sleeping() -> bool:  # the message turn and the charge's completion are committed
                return (await client.describe(actor_id))["turns"] >= 2

            await eventually(sleeping, 30, "the order to reach its timer")
            armed = time.time()  # the timer is due about 2 s from here
            await _sleep(1.0)
            first.kill()
        killed = time.time()
        with worker(redis_url, *LEASE, env=env):
            async def done() -> Any:
                return (await client.call(actor_id, 2, timeout=30))["done"]

            assert await eventually(done, 30, "the timer to fire") == ["o2"]
        finished = time.time()
    # Due about 1 s after the kill; a fresh 2 s wait from the takeover would end after killed + 2.6 s.
    assert armed + 1.9 <= finished < killed + 2.3, (armed, killed, finished)
    assert log.read_text().splitlines() == [f"charge o2 {actor_id}/1", "effect charged o2 receipt-o2"]


async def test_parked_host_call_is_reissued_by_the_new_owner(redis_url: str, actor_snapshot: bytes,
                                                             tmp_path: Any) -> None:
    log, gates = tmp_path / "effects.log", tmp_path / "gates"
    gates.mkdir()
    env = {"MVACTORS_TEST_LOG": str(log), "MVACTORS_TEST_GATES": str(gates)}
    async with mvactors.connect(redis_url) as client:
        actor_id = await client.spawn(actor_snapshot, imports="counter")
        with worker(redis_url, *LEASE, env=env) as first:
            await client.send(actor_id, 4, "gate:g1")

            async def parked() -> bool:
                return log.exists() and "fetch gate:g1" in log.read_text()

            await eventually(parked, 30, "the host call to start")
            first.kill()
        with worker(redis_url, *LEASE, env=env):
            async def reissued() -> bool:
                return log.read_text().count("fetch gate:g1") == 2

            await eventually(reissued, 30, "the new owner to issue the call again")
            (gates / "g1").touch()

            async def done() -> Any:
                return (await client.call(actor_id, 2, timeout=30))["done"]

            assert await eventually(done, 30, "the call to complete") == ["gate:g1"]


async def test_counters_on_a_three_master_redis_cluster(actor_snapshot: bytes) -> None:
    senders, count = ["s1", "s2"], 80
    async with redis_cluster(replicas=REPLICA_ACKS) as url, mvactors.connect(url) as client:
        actors = await spawn_counters(client, actor_snapshot, 6)
        workers = [worker(url, *LEASE) for _ in range(2)]
        try:
            feeders = run_feeders(url, senders, count, actors)
            workers[0].wait_for("started")

            async def some_progress() -> bool:
                return sum([(await client.describe(a))["turns"] for a in actors]) > 20

            await eventually(some_progress, 30, "turns to be committed")
            workers[0].kill()
            workers[0] = worker(url, *LEASE)
            finish(feeders)
            await assert_exact(client, actors, senders, count)
        finally:
            for p in workers:
                p.kill()


@pytest.mark.parametrize("how", ["kill-9", "sigterm"])
async def test_a_call_to_an_async_export_is_answered_once_by_the_owner_it_moved_to(
        redis_url: str, actor_snapshot: bytes, tmp_path: Any, how: str) -> None:
    log, gates = tmp_path / "effects.log", tmp_path / "gates"
    gates.mkdir()
    env = {"MVACTORS_TEST_LOG": str(log), "MVACTORS_TEST_GATES": str(gates)}
    answers: list[Any] = []
    async with mvactors.connect(redis_url) as client, anyio.create_task_group() as tg:
        actor_id = await client.spawn(actor_snapshot, imports="counter")

        async def caller() -> None:
            answers.append(await client.call(actor_id, 4, "gate:g1", timeout=90))

        with worker(redis_url, *LEASE, "--worker-id", "first", env=env) as first:
            tg.start_soon(caller)

            async def parked() -> bool:  # the call's turn is committed, its promise pending on the gate
                return log.exists() and "fetch gate:g1" in log.read_text() and (
                    await client.describe(actor_id))["turns"] >= 1

            await eventually(parked, 30, "the async export to await its host call")
            if how == "kill-9":
                first.kill()
            else:
                first.signal(signal.SIGTERM)
                assert first.wait(30) == 0, first.output()
                assert "handed over 1 actors" in first.output()
        assert answers == []
        with worker(redis_url, *LEASE, "--worker-id", "second", env=env) as second:
            async def reissued() -> bool:
                return log.read_text().count("fetch gate:g1") == 2

            await eventually(reissued, 30, "the new owner to issue the host call again")
            (gates / "g1").touch()
            await eventually(lambda: _true(bool(answers)), 60, "the original call to be answered")
            assert answers == ["gate:g1"]
            state = await client.call(actor_id, 2, timeout=30)
            assert state["done"] == ["gate:g1"]  # the export's chain ran to its end once
            assert "cannot be answered" not in second.output()
    assert answers == ["gate:g1"]


async def _true(value: bool) -> bool:
    return value


async def test_a_poison_actor_fails_alone_and_the_fleet_serves_the_others(
        redis_url: str, actor_snapshot: bytes) -> None:
    # Issue 13: every snapshot of one actor fails (MVACTORS_POISON, as an engine fault in
    # create_snapshot would).  It is marked failed, its caller hears so at its reply key, no
    # worker exits or adopts it again, and every other actor is served throughout.
    env = {"MVACTORS_POISON": "poison"}
    async with mvactors.connect(redis_url) as client:
        actors = await spawn_counters(client, actor_snapshot, 9)
        poison = await client.spawn(actor_snapshot, imports="counter", actor_id="poison")
        workers = [worker(redis_url, *LEASE, env=env) for _ in range(3)]
        try:
            await send_wanting_reply(client, poison, "p1", 1, "s", 1)
            for actor_id in actors:
                assert await client.call(actor_id, 1, "s", 1, timeout=30) == 1
            code, reason = await reply_of(client, poison, "p1", 30)
            assert code == REPLY_FAILED and "MVACTORS_POISON" in reason, reason
            failed = await client.describe(poison)
            assert "MVACTORS_POISON" in failed["failed"] and failed["owner"] is None
            with pytest.raises(ActorFailedInRedis):
                await client.call(poison, 1, "s", 2, timeout=30)
            for actor_id in actors:
                assert await client.call(actor_id, 1, "s", 2, timeout=30) == 2
            assert [p.proc.poll() for p in workers] == [None] * 3
            assert await client.describe(poison) == failed  # nobody adopted it again
        finally:
            for p in workers:
                p.kill()

"""What happens while a worker adopts an actor: turns that run before ``adopt()`` has returned."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

import mvactors
from mvactors.cluster.crash import CRASH_EXIT_CODE
from mvactors.cluster.keys import HINT_FREE

from .cluster_hosts import IMPORTS
from .processes import eventually, worker

pytestmark = pytest.mark.anyio


@pytest.fixture
def actor_snapshot(snapshot: Callable[[str], bytes]) -> bytes:
    return snapshot("cluster_actor")


async def test_a_completion_that_runs_while_the_actor_is_adopted_is_committed_and_answered(
        redis_url: str, actor_snapshot: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The record awaits a journaled call whose result is in the journal: adopt() re-issues it, the
    # recorded result comes back at once, and its turn may run before adopt() returns.  With no
    # more mail coming, that turn must still be committed and the waiting caller answered.
    log = tmp_path / "effects.log"
    monkeypatch.setenv("MVACTORS_TEST_LOG", str(log))
    answers: list[Any] = []
    async with mvactors.connect(redis_url) as client, anyio.create_task_group() as tg:
        actor_id = await client.spawn(actor_snapshot, imports="counter")

        async def caller() -> None:
            try:
                answers.append(await client.call(actor_id, 3, "o1", 0, timeout=60))
            except Exception as exc:  # seen by the assertions, not lost in the task group
                answers.append(exc)

        tg.start_soon(caller)

        async def sent() -> bool:
            return (await client.describe(actor_id))["mailbox"] == 1

        await eventually(sent, 30, "the call to be in the mailbox")
        with worker(redis_url, "--lease-ms", "600", env={"MVACTORS_CRASH_AT": "after-journal"}) as crashing:
            # charged and journaled, not delivered
            assert await anyio.to_thread.run_sync(crashing.wait, 30) == CRASH_EXIT_CODE, crashing.output()
        assert (await client.describe(actor_id))["turns"] == 1

        async with mvactors.Worker(redis_url, IMPORTS, idle_release_s=0.5) as taker:
            real_adopt = taker.runtime.adopt
            adopted: list[int] = []

            async def adopt_then_let_its_turns_run(*args: Any, **kwargs: Any) -> Any:
                actor = await real_adopt(*args, **kwargs)
                await taker.runtime.wait_idle()  # the completion's turn runs before adopt() returns
                adopted.append(actor.metrics.turns)
                return actor

            monkeypatch.setattr(taker.runtime, "adopt", adopt_then_let_its_turns_run)
            await eventually(lambda: _value(answers), 30, "the call to be answered")
            assert adopted == [1]  # the turn did run inside adopt()
            assert answers == ["receipt-o1"]
            info = await client.describe(actor_id)
            assert info["turns"] == 2 and info["mailbox"] == 0

            async def released() -> bool:  # it awaits nothing more: it goes back to Redis
                return (await client.describe(actor_id))["owner"] is None

            await eventually(released, 30, "the idle actor to be released")
    assert log.read_text().splitlines() == [f"charge o1 {actor_id}/1", "effect charged o1 receipt-o1"]


async def _value(items: list[Any]) -> bool:
    return bool(items)


async def test_an_idle_actor_handed_back_to_redis_is_not_adopted_again_without_work(
        redis_url: str, actor_snapshot: bytes) -> None:
    # A release hinted "free" even for an idle actor: the releasing worker took its own hint, adopted
    # the actor again and released it again, every lease/4, for as long as it stayed idle.
    async with mvactors.Worker(redis_url, IMPORTS, lease_ms=400, idle_release_s=0.1) as worker, \
            mvactors.connect(redis_url) as client:
        actor_id = await client.spawn(actor_snapshot, imports="counter")
        assert await client.call(actor_id, 1, "s", 1, timeout=10) == 1
        hints_before = await client.redis.xlen(HINT_FREE)  # the call's own wake-up hint

        async def released() -> bool:
            return worker.stats()["released"] >= 1

        await eventually(released, 30, "the idle actor to be released")
        assert await client.redis.xlen(HINT_FREE) == hints_before  # nothing to do: nobody is woken
        assert (await client.describe(actor_id))["owner"] is None
        assert await client.call(actor_id, 1, "s", 2, timeout=10) == 2  # mail brings it back
        assert worker.stats()["acquired"] == 2


async def test_a_worker_that_joins_later_is_given_a_share_and_then_the_owners_stay(
        redis_url: str, actor_snapshot: bytes) -> None:
    # Idle release is 60 s here: only the balancing moves actors.  The first worker sheds down to its
    # fair share (10) plus the hysteresis (2), and leaves what it shed to the newcomer when mail comes.
    async with mvactors.connect(redis_url) as client, \
            mvactors.Worker(redis_url, IMPORTS, idle_release_s=60) as first:
        ids = [await client.spawn(actor_snapshot, imports="counter") for _ in range(20)]
        for actor_id in ids:
            assert await client.call(actor_id, 1, "s", 1, timeout=10) == 1
        assert len(first.actors) == 20
        async with mvactors.Worker(redis_url, IMPORTS, idle_release_s=60) as second:
            async def shed() -> bool:
                return len(first.actors) <= 12

            await eventually(shed, 30, "the first worker to shed down to its share")
            for actor_id in ids:  # every actor answers, each message applied once, wherever it runs
                assert await client.call(actor_id, 1, "s", 2, timeout=10) == 2
            assert len(second.actors) >= 8 and len(first.actors) + len(second.actors) == 20
            assert first.stats()["released"] == 20 - len(first.actors)  # nothing moved back and forth

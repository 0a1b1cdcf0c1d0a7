"""A fatal turn fails its actor: every waiting caller learns it through its reply key, and the
worker serves the others (issue 14 §1)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import mvactors
from mvactors.cluster.wire import REPLY_FAILED

from .failing import reply_of, send_wanting_reply
from .processes import eventually, worker

pytestmark = pytest.mark.anyio


@pytest.fixture
def actor_snapshot(snapshot: Callable[[str], bytes]) -> bytes:
    return snapshot("cluster_actor")


async def test_a_fatal_completion_turn_answers_its_caller_and_the_mail_queued_behind_it(
        redis_url: str, actor_snapshot: bytes, tmp_path: Path) -> None:
    # The completion of an awaited host call loops until the hard stop (5 s) kills the VM.  Its
    # caller, and the calls sent while it ran (mail the worker never read), get the failure at
    # their reply keys: before, they learned of it only from the client's describe() poll.
    log, gates = tmp_path / "effects.log", tmp_path / "gates"
    gates.mkdir()
    env = {"MVACTORS_TEST_LOG": str(log), "MVACTORS_TEST_GATES": str(gates)}
    async with mvactors.connect(redis_url) as client:
        stuck = await client.spawn(actor_snapshot, imports="counter", actor_id="stuck")
        healthy = await client.spawn(actor_snapshot, imports="counter", actor_id="healthy")
        with worker(redis_url, env=env) as proc:
            await send_wanting_reply(client, stuck, "fatal", 6, "gate:g1")

            async def awaiting() -> bool:
                return log.exists() and "fetch gate:g1" in log.read_text() and (
                    await client.describe(stuck))["turns"] == 1

            await eventually(awaiting, 30, "the call to await its host call")
            (gates / "g1").touch()

            async def looping() -> bool:
                return "effect looping gate:g1" in log.read_text()

            await eventually(looping, 30, "the completion turn to start")
            for n in (1, 2):  # queued behind the running turn
                await send_wanting_reply(client, stuck, f"behind-{n}", 1, "s", n)
            for message_id in ("fatal", "behind-1", "behind-2"):
                code, reason = await reply_of(client, stuck, message_id, 30)
                assert code == REPLY_FAILED and "TimeLimitExceeded" in reason, (message_id, reason)
            info = await client.describe(stuck)
            assert "TimeLimitExceeded" in info["failed"] and info["owner"] is None
            assert await client.call(healthy, 1, "s", 1, timeout=30) == 1
            assert proc.proc.poll() is None

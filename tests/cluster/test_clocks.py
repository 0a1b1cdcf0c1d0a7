"""Clocks: a worker whose wall clock is off from Redis's still takes dead workers' actors over on time."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import mvactors
import mvactors.cluster.lease

from .cluster_hosts import IMPORTS
from .processes import eventually, worker

pytestmark = pytest.mark.anyio


@pytest.fixture
def actor_snapshot(snapshot: Callable[[str], bytes]) -> bytes:
    return snapshot("cluster_actor")


class _SkewedTime:
    """The ``time`` module as the worker sees it, with a wall clock ``skew`` seconds off."""

    def __init__(self, skew: float) -> None:
        self.skew = skew

    def time(self) -> float:
        return time.time() + self.skew

    def monotonic(self) -> float:
        return time.monotonic()


async def test_a_worker_whose_clock_runs_behind_takes_a_dead_workers_actor_over_on_time(
        redis_url: str, actor_snapshot: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Lease expiries in the work index are on Redis's clock.  A worker that compared them with its own
    # clock, a minute behind, found the orphan a minute late.
    log, gates = tmp_path / "effects.log", tmp_path / "gates"
    gates.mkdir()
    env = {"MVACTORS_TEST_LOG": str(log), "MVACTORS_TEST_GATES": str(gates)}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    async with mvactors.connect(redis_url) as client:
        actor_id = await client.spawn(actor_snapshot, imports="counter")
        with worker(redis_url, "--lease-ms", "600", env=env) as first:
            await client.send(actor_id, 4, "gate:g1")

            async def parked() -> bool:  # awaiting a host call: it needs an owner without new mail
                return log.exists() and "fetch gate:g1" in log.read_text() and (
                    await client.describe(actor_id))["turns"] == 1

            await eventually(parked, 30, "the host call to start")
            first.kill()
        killed = time.monotonic()
        monkeypatch.setattr(mvactors.cluster.lease, "time", _SkewedTime(-60.0))
        async with mvactors.Worker(redis_url, IMPORTS, lease_ms=600) as taker:
            async def reissued() -> bool:
                return log.read_text().count("fetch gate:g1") == 2

            await eventually(reissued, 20, "the new owner to issue the call again")
            taken = time.monotonic() - killed
            (gates / "g1").touch()

            async def done() -> Any:
                return (await client.call(actor_id, 2, timeout=30))["done"]

            assert await eventually(done, 30, "the call to complete") == ["gate:g1"]
            assert taken < 10, taken  # one lease TTL and a few scans, not the skew
            assert taker.stats()["acquired"] == 1

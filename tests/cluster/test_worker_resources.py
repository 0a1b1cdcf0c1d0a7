"""A worker short of what actors need (an engine, room for another VM) leaves them to others, never fails them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

import mvactors
from mvactors.vm import _pool, _wasm

from .cluster_hosts import IMPORTS

pytestmark = pytest.mark.anyio


async def test_a_worker_with_a_stale_engine_build_does_not_start_or_fail_actors(
        redis_url: str, snapshot: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with mvactors.connect(redis_url) as client:
        actor_id = await client.spawn(snapshot("cluster_actor"), imports="counter")  # type: ignore[operator]
        await client.send(actor_id, 1, "s1", 1)
        stale = tmp_path / "mvx.wasm"
        stale.write_bytes(_wasm.WASM_PATH.read_bytes()[:-8])  # the digest section, cut short
        monkeypatch.setattr(_wasm, "WASM_PATH", stale)
        monkeypatch.setattr(_wasm.WasmEngine, "_engines", {})
        with pytest.raises(_wasm.EngineMissing, match="stale"):
            async with mvactors.Worker(redis_url, IMPORTS):
                pass
        described = await client.describe(actor_id)
        assert described["failed"] is None and described["mailbox"] == 1


async def test_a_worker_out_of_vm_room_leaves_the_actor_to_another_worker(
        redis_url: str, snapshot: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    real_instance = _wasm.Instance
    made = 0

    def two_instances_at_most(*args: Any) -> _wasm.Instance:
        nonlocal made
        made += 1
        if made > 2:
            raise OSError("mmap failed")  # what wasmtime reports when address space or memory runs out
        return real_instance(*args)

    monkeypatch.setattr(_pool, "_idle", {True: [], False: []})
    data = snapshot("cluster_actor")
    async with mvactors.connect(redis_url) as client:
        actors = [await client.spawn(data, imports="counter") for _ in range(3)]
        monkeypatch.setattr(_wasm, "Instance", two_instances_at_most)
        async with mvactors.Worker(redis_url, IMPORTS, lease_ms=500) as full:
            for actor_id in actors:
                await client.send(actor_id, 1, "s1", 1)
            with anyio.fail_after(30):
                while full.max_actors is None or sum([(await client.describe(a))["turns"] for a in actors]) < 2:
                    await anyio.sleep(0.02)  # polling Redis: nothing to wait on across processes
            assert full.max_actors == 2
            starved = [a for a in actors if (await client.describe(a))["turns"] == 0]
            assert len(starved) == 1 and (await client.describe(starved[0]))["failed"] is None
            monkeypatch.setattr(_wasm, "Instance", real_instance)
            async with mvactors.Worker(redis_url, IMPORTS, lease_ms=500):
                with anyio.fail_after(30):
                    assert await client.call(starved[0], 2) is not None  # taken over once its lease lapsed

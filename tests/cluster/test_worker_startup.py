"""A worker that cannot run any actor refuses to start instead of failing the actors it adopts."""

from __future__ import annotations

from pathlib import Path

import pytest

import mvactors
from mvactors.vm import _wasm

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

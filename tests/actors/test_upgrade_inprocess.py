"""``await actor.upgrade(...)`` on a Runtime actor (issue 16): mailbox order, migrate, atomicity."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import mvactors

pytestmark = pytest.mark.anyio

V1 = """
let count = 0;
function add() { count = count + 1; return count; }
function out() { return { count: count }; }
vmExport(1, add);
vmExport(10, out);
"""
V2 = """
let count = 0;
function add() { count = count + 2; return count; }
function into(v) { count = v.count * 100; }
function boom(v) { count = 7; throw "cannot migrate"; }
vmExport(1, add);
vmExport(11, into);
vmExport(12, boom);
"""


async def test_upgrade_in_process_keeps_mailbox_order_and_is_atomic(compile_js: Callable[[str], bytes]) -> None:
    async with mvactors.Runtime() as runtime:
        actor = await runtime.spawn(compile_js(V1))
        first = actor.submit(1)  # queued before the upgrade: runs on the old code
        await actor.upgrade(compile_js(V2), migrate=(10, 11), timeout=5)
        assert await first.wait() == 1
        assert await actor.call(1) == 102  # 1 migrated x 100, then +2
        with pytest.raises(mvactors.UpgradeFailed, match="cannot migrate"):
            await actor.upgrade(compile_js(V2), migrate=(1, 12))
        assert await actor.call(1) == 104  # old state, old (v2) code
        with pytest.raises(mvactors.UpgradeFailed, match=r"no export 99 \(migrate IN\)"):
            await actor.upgrade(compile_js(V2), migrate=(1, 99))
        await actor.upgrade(compile_js(V1))  # without migrate: the new snapshot's own state
        assert await actor.call(1) == 1

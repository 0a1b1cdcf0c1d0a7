"""Eviction policies under ``max_resident``: ``"lru"`` (the default) and ``"segmented"``."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from runtime_support import GET_COUNT, INCREMENT, TIMEOUT

import mvactors

pytestmark = pytest.mark.anyio


async def cycle(rt_actor: bytes, host: Any, eviction: str, n: int, cap: int, rounds: int) -> dict[str, Any]:
    """``rounds`` rounds of one message to each of ``n`` actors in turn, under a cap of ``cap``.

    Returns the counters of the rounds after the first (the first only warms up), each
    actor's count, and how many actors kept their VM through those rounds.
    """
    async with mvactors.Runtime(clock="virtual", max_resident=cap, eviction=eviction) as rt:  # type: ignore[arg-type]
        actors = [await rt.spawn(rt_actor, host.imports(f"a{i}"), actor_id=f"a{i}") for i in range(n)]
        with anyio.fail_after(TIMEOUT):
            for actor in actors:
                await actor.send(INCREMENT, 1)
            await rt.wait_idle()
            before = rt.stats()
            woke_before = [a.metrics.rehydrations for a in actors]
            for _ in range(rounds - 1):
                for actor in actors:
                    await actor.send(INCREMENT, 1)
                    assert rt.resident_count <= cap
                await rt.wait_idle()
            after = rt.stats()
            stayed = sum(1 for a, woke in zip(actors, woke_before, strict=True) if a.metrics.rehydrations == woke)
            counts = [await a.call(GET_COUNT) for a in actors]
    return {
        "turns": after["turns"] - before["turns"],
        "hibernations": after["hibernations"] - before["hibernations"],
        "wakes": after["rehydrations"] - before["rehydrations"],
        "stayed": stayed,
        "counts": counts,
    }


async def test_lru_hibernates_the_actor_due_next_on_a_cycle_larger_than_the_cap(rt_actor, host):
    n, cap, rounds = 40, 20, 4
    got = await cycle(rt_actor, host, "lru", n, cap, rounds)
    assert got["counts"] == [rounds] * n
    assert got["turns"] == (rounds - 1) * n
    # Every turn wakes its actor and hibernates another: what "segmented" is for.
    assert got["wakes"] == got["turns"] and got["hibernations"] == got["turns"]
    assert got["stayed"] == 0


async def test_segmented_keeps_most_of_the_cap_resident_on_a_cycle_larger_than_the_cap(rt_actor, host):
    n, cap, rounds = 40, 20, 4
    got = await cycle(rt_actor, host, "segmented", n, cap, rounds)
    assert got["counts"] == [rounds] * n  # no message lost or run twice
    turns = got["turns"]
    assert turns == (rounds - 1) * n
    # Protected (cap minus probation's 10%: 18 actors) stays; the other 22 pass through
    # probation, each waking once a round: 22/40 of the turns, where LRU wakes on all 40.
    assert got["stayed"] >= 0.8 * cap
    assert got["hibernations"] <= (1 - 0.8 * cap / n) * turns
    assert got["wakes"] == got["hibernations"]


async def scan(rt_actor: bytes, host: Any, eviction: str) -> dict[str, str]:
    """An actor that comes back soon after the cap hibernated it, then a scan of 12 one-shot actors.

    Returns the state of "hot" once "x" joined, and of the actors there before the scan after it.
    """
    async with mvactors.Runtime(clock="virtual", max_resident=4, eviction=eviction) as rt:  # type: ignore[arg-type]
        with anyio.fail_after(TIMEOUT):
            # With a cap of 4, protected holds 3 and probation 1.
            old = [await rt.spawn(rt_actor, host.imports(f"p{i}"), actor_id=f"p{i}") for i in range(3)]
            hot = await rt.spawn(rt_actor, host.imports("hot"), actor_id="hot")
            await rt.sleep(1)
            await hot.call(INCREMENT, 1)
            await rt.spawn(rt_actor, host.imports("x"), actor_id="x")  # one over the cap
            states = {"hot once x joined": hot.state}
            await rt.sleep(1)
            # Back after 1 s, while p0 has been idle 2 s: it takes p0's place in protected.
            assert await hot.call(INCREMENT, 1) == 2
            for i in range(12):
                one_shot = await rt.spawn(rt_actor, host.imports(f"s{i}"), actor_id=f"s{i}")
                assert await one_shot.call(INCREMENT, 1) == 1
                assert rt.resident_count <= 4
            states.update({a.id: a.state for a in [*old, hot]})
            assert await hot.call(GET_COUNT) == 2
    return states


async def test_segmented_keeps_a_promoted_actor_through_a_scan(rt_actor, host):
    states = await scan(rt_actor, host, "segmented")
    # The cap took "hot" from probation; back soon, it took p0's place in protected, and the
    # scan took p0 from probation, where it went.
    assert states == {"hot once x joined": "hibernated", "p0": "hibernated", "p1": "idle", "p2": "idle",
                      "hot": "idle"}


async def test_lru_loses_everything_to_the_same_scan(rt_actor, host):
    states = await scan(rt_actor, host, "lru")
    assert states == {"hot once x joined": "idle", "p0": "hibernated", "p1": "hibernated", "p2": "hibernated",
                      "hot": "hibernated"}


async def test_hibernate_after_idles_out_actors_in_both_segments(rt_actor, host):
    cap = 20  # protected holds 18, probation 2
    async with mvactors.Runtime(clock="virtual", max_resident=cap, hibernate_after=10.0,
                                eviction="segmented") as rt:
        with anyio.fail_after(TIMEOUT):
            p = [await rt.spawn(rt_actor, host.imports(f"p{i}"), actor_id=f"p{i}") for i in range(18)]
            q = [await rt.spawn(rt_actor, host.imports(f"q{i}"), actor_id=f"q{i}") for i in range(2)]
            await rt.sleep(1)
            for actor in [*p[1:], *q]:  # all active at 1 s but p0 (0 s)
                await actor.call(INCREMENT, 1)
            await rt.sleep(1)
            s = await rt.spawn(rt_actor, host.imports("s"), actor_id="s")  # the cap hibernates q0
            assert q[0].state == "hibernated"
            await rt.sleep(1)
            # q0 comes back (last active at 1 s, after p0): into protected; p0 moves to
            # probation's newest end, behind s (active at 2 s), and the cap hibernates q1.
            await q[0].call(GET_COUNT)
            assert q[1].state == "hibernated" and p[0].state == "idle"
            assert rt.resident_count == cap
            await rt.sleep(10.5 - rt.clock.now())
            # p0's 10 s ran out first although probation holds it behind s.
            assert p[0].state == "hibernated"
            assert [a.state for a in (*p[1:], s, q[0])] == ["idle"] * 19
            await rt.sleep(1)  # 11.5 s: protected's p1..p17 (active at 1 s)
            assert [a.state for a in p] == ["hibernated"] * 18
            assert (s.state, q[0].state) == ("idle", "idle")
            await rt.sleep(1)  # 12.5 s: s, in probation (active at 2 s)
            assert (s.state, q[0].state) == ("hibernated", "idle")
            await rt.sleep(1)  # 13.5 s: q0, in protected (active at 3 s)
            assert rt.resident_count == 0
            assert await q[0].call(GET_COUNT) == 1


def test_eviction_defaults_to_lru_and_says_which_it_is():
    assert mvactors.Runtime().eviction == "lru"
    assert mvactors.Runtime(eviction="segmented").eviction == "segmented"


def test_unknown_eviction_names_the_choices():
    with pytest.raises(ValueError, match=r"eviction must be 'lru' or 'segmented', not 'lfu'"):
        mvactors.Runtime(eviction="lfu")  # type: ignore[arg-type]

"""Failures nobody awaits: logged on the "mvactors" logger, counted, kept on the actor, given to on_error."""

from __future__ import annotations

import logging

import anyio
import pytest

import mvactors

pytestmark = pytest.mark.anyio

GUEST = """
const sleep = vmImport(9);
let n = 0;
vmExport(1, (x) => { if (x < 0) { throw { name: "RangeError", message: "negative " + x }; } n = n + x; return n; });
vmExport(2, (k) => { let s = 0; for (let i = 0; i < k; i++) { s = s + i; } return s; });
vmExport(3, async (ms) => { await sleep(ms); throw { name: "Late", message: "after the sleep" }; });
"""
IMPORTS = {9: mvactors.imports.sleep}


class ErrorSink:
    """on_error that records what it was given and lets the test wait for it."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, BaseException]] = []
        self.event = anyio.Event()

    def __call__(self, actor: mvactors.Actor, exc: BaseException) -> None:
        self.seen.append((actor.id, exc))
        self.event.set()

    async def wait(self) -> None:
        with anyio.fail_after(10):
            await self.event.wait()


def records(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "mvactors" and r.levelno == level]


async def test_a_failed_send_is_logged_counted_kept_and_reported(compile_js, caplog):
    caplog.set_level(logging.DEBUG, logger="mvactors")
    sink = ErrorSink()
    async with mvactors.Runtime(clock="virtual", on_error=sink) as rt:
        actor = await rt.spawn(compile_js(GUEST), IMPORTS, actor_id="dev-7")
        await actor.send(1, -5)
        await sink.wait()
        assert rt.stats()["failed_turns"] == rt.stats()["unawaited_failures"] == 1
        assert isinstance(actor.last_failure, mvactors.GuestError)
        assert actor.last_failure.value == {"name": "RangeError", "message": "negative -5"}
        assert await actor.call(1, 2) == 2  # the actor goes on serving
    assert [(actor_id, exc) for actor_id, exc in sink.seen] == [("dev-7", actor.last_failure)]
    (warning,) = records(caplog, logging.WARNING)
    assert "dev-7" in warning and "call of export 1" in warning and "negative -5" in warning


async def test_a_failure_its_caller_receives_is_not_reported_again(compile_js, caplog):
    caplog.set_level(logging.DEBUG, logger="mvactors")
    sink = ErrorSink()
    async with mvactors.Runtime(clock="virtual", on_error=sink) as rt:
        actor = await rt.spawn(compile_js(GUEST), IMPORTS)
        with pytest.raises(mvactors.GuestError):
            await actor.call(1, -1)
        await rt.wait_idle()
        assert rt.stats()["failed_turns"] == 1 and rt.stats()["unawaited_failures"] == 0
        assert actor.last_failure is not None
    assert sink.seen == []
    assert records(caplog, logging.WARNING) == []
    assert any("its caller gets the error" in m for m in records(caplog, logging.DEBUG))


async def test_an_async_chain_nobody_awaits_that_fails_later_is_reported(compile_js):
    sink = ErrorSink()
    async with mvactors.Runtime(clock="virtual", on_error=sink) as rt:
        actor = await rt.spawn(compile_js(GUEST), IMPORTS)
        await actor.send(3, 60_000)
        await sink.wait()
        assert rt.clock.now() >= 60
        assert rt.stats()["unawaited_failures"] == 1
    (_, exc), = sink.seen
    assert isinstance(exc, mvactors.GuestError) and exc.value["name"] == "Late"
    assert actor.last_failure is exc


async def test_pauses_and_hibernation_churn_are_logged(compile_js, caplog):
    caplog.set_level(logging.DEBUG, logger="mvactors")
    async with mvactors.Runtime(clock="virtual", max_resident=1) as rt:
        metered = await rt.spawn(compile_js(GUEST), IMPORTS, actor_id="metered",
                                 gas=mvactors.GasPolicy(per_turn=2_000))
        other = await rt.spawn(compile_js(GUEST), IMPORTS, actor_id="other")
        await other.call(1, 1)
        await metered.send(2, 100_000)
        with anyio.fail_after(10):
            while metered.pause is None:
                await anyio.sleep(0)
        await other.call(1, 1)
    assert any("metered paused" in m for m in records(caplog, logging.INFO))
    debug = records(caplog, logging.DEBUG)
    assert any(m.endswith("hibernated") for m in debug)
    assert any("woke from hibernation" in m for m in debug)


def test_the_library_installs_no_handlers():
    assert logging.getLogger("mvactors").handlers == []

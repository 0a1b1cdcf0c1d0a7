"""Upgrade (issue 16): the new record of an actor, made in the client's process from its old one.

``Client.upgrade`` sends a barrier through the mailbox; once a worker has run (and committed)
every earlier message and the actor awaits nothing, the worker hands it back paused, and the
client builds the new state here: with ``migrate=(OUT, IN)``, export OUT runs on the old
state, its plain value is copied (msgpack), the new snapshot is restored and IN(value) runs
on it.  Nothing runs a host function here: a migrate export that calls one fails the upgrade.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..actors import Actor, ActorRecord, HostCalls, Reply, Runtime
from ..errors import MicroviumError, UpgradeFailed
from ..vm.snapshot import export_ids
from .wire import pack, storable_record, unpack

_MAX_STUBS = 1024  # restores tried, one more stand-in each (a snapshot imports a few dozen at most)


class _NoHost(HostCalls):
    """Every host call of a migrate export is refused (it would run outside any worker)."""

    def call(self, actor: Actor, import_id: int, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        raise UpgradeFailed(f"a migrate export called host function {import_id}; OUT and IN must only move "
                            "state (make the call in a message after the upgrade)")

    def start(self, actor: Actor, call: Any) -> None:
        raise UpgradeFailed(f"a migrate export called async host function {call.import_id}; OUT and IN must "
                            "only move state")


def _refused(*args: Any) -> None:
    return None


async def _start(runtime: Runtime, record: ActorRecord | None, snapshot: bytes, name: str) -> Actor:
    imports: dict[int, Callable[..., Any]] = {}
    for _ in range(_MAX_STUBS):
        try:
            if record is not None:
                return await runtime.adopt(record, name, imports)
            return await runtime.spawn(snapshot, imports, name)
        except MicroviumError as exc:
            if exc.missing_import is None:
                raise UpgradeFailed(f"the {name} snapshot does not restore: {exc}") from None
            imports[exc.missing_import] = _refused
    raise UpgradeFailed(f"the {name} snapshot imports too many host functions")


async def _run(runtime: Runtime, actor: Actor, export: int, args: tuple[Any, ...], what: str) -> Any:
    reply: Reply = actor.submit(export, *args)
    await runtime.wait_idle()
    if not reply.done:
        raise UpgradeFailed(f"{what} (export {export}) did not return a value in its turn (an async export "
                            "awaiting something cannot migrate)")
    try:
        return reply.result()
    except UpgradeFailed:
        raise
    except Exception as exc:
        raise UpgradeFailed(f"{what} (export {export}) threw: {exc}") from None


def check_migrate(old_snapshot: bytes, new_snapshot: bytes, migrate: tuple[int, int] | None) -> None:
    """UpgradeFailed, before anything changes, when a migrate export is missing."""
    if migrate is None:
        return
    out, into = migrate
    if out not in export_ids(old_snapshot):
        raise UpgradeFailed(f"the running code has no export {out} (migrate OUT); its exports are "
                            f"{sorted(export_ids(old_snapshot))}")
    if into not in export_ids(new_snapshot):
        raise UpgradeFailed(f"the new snapshot has no export {into} (migrate IN); its exports are "
                            f"{sorted(export_ids(new_snapshot))}")


async def new_record(old: ActorRecord | None, old_snapshot: bytes, snapshot: bytes,
                     migrate: tuple[int, int] | None, fresh_prefix: bytes) -> bytes:
    """The actor's new record as history and T:c keep it (``fresh_prefix`` + snapshot without migrate);
    UpgradeFailed says why it cannot be made (the old state is untouched either way)."""
    async with Runtime(host_calls=_NoHost()) as runtime:
        if migrate is None:
            await _start(runtime, None, snapshot, "new")  # it must restore
            return fresh_prefix + snapshot
        out, into = migrate
        before = await _start(runtime, old, old_snapshot, "old")
        value = await _run(runtime, before, out, (), "migrate OUT")
        try:
            value = unpack(pack(value))  # a plain copy: nothing of the old heap crosses over
        except TypeError as exc:
            raise UpgradeFailed(f"migrate OUT (export {out}) returned a value that cannot be copied: {exc}") from None
        after = await _start(runtime, None, snapshot, "new")
        await _run(runtime, after, into, (value,), "migrate IN")
        return storable_record(after.record().encode(), compress=True)


__all__ = ["check_migrate", "new_record"]

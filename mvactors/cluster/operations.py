"""``Operations``: repairing and upgrading stored actors (pause, resume, retry, cancel, snapshot,
upgrade), on top of :class:`~.messaging.Messaging`.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import uuid
from typing import Any

import anyio

from ..actors import ActorRecord
from ..errors import UpgradeFailed
from ..vm import SnapshotLike
from ..vm.snapshot import check_size, snapshot_bytes
from .history import FRESH
from .keys import ActorKeys
from .messaging import Messaging
from .upgrade import check_migrate, new_record
from .wire import (
    REPLY_CANCELLED,
    UPGRADE_BARRIER,
    Described,
    pack,
    stored_record,
    text,
)


class Operations(Messaging):
    """Repair and upgrade (a base of :class:`~.client.Client`)."""

    async def pause(self, actor_id: str, detail: str = "") -> None:
        """Run no more turns of the actor until :meth:`resume`; mail is still accepted.

        Durable (the pause is in Redis) and idempotent.  A worker running the actor loses it at
        once (its epoch moves on); turns it had not committed run again after the resume.
        ``detail`` is kept in ``describe()["paused"]``.  A failed actor cannot be paused (ValueError).
        """
        keys = ActorKeys.of(actor_id)
        raw = await self._write(keys.tag, "mva_pause", [5, keys.state, keys.lease, keys.work, keys.ready, keys.paused,
                                                  actor_id, detail])
        status = text(raw[0])
        if status == "UNKNOWN":
            raise self._not_found(actor_id)
        if status == "FAILED":
            raise ValueError(f"actor {actor_id!r} has failed ({text(raw[1])}); repair it with retry(), not pause()")

    async def resume(self, actor_id: str, extra_gas: int | None = None) -> None:
        """End an operator pause or a gas pause.  After a gas pause the rolled-back turn runs again, with
        ``extra_gas`` instructions (as ``Actor.resume`` gives); its caller, still waiting, gets the result.
        ValueError when the actor is not paused."""
        if extra_gas is not None and (
                not isinstance(extra_gas, int) or isinstance(extra_gas, bool) or not 0 < extra_gas <= 0x7FFFFFFF):
            raise ValueError(f"extra_gas must be a positive int below 2**31, got {extra_gas!r}")
        keys = ActorKeys.of(actor_id)
        raw = await self._write(keys.tag, "mva_resume", [3, keys.state, keys.work, keys.paused, actor_id,
                                                   uuid.uuid4().hex, "" if extra_gas is None else extra_gas])
        status = text(raw[0])
        if status == "UNKNOWN":
            raise self._not_found(actor_id)
        if status == "NOT_PAUSED":
            raise ValueError(f"actor {actor_id!r} is not paused; nothing to resume")
        await self._hint(actor_id)

    async def retry(self, actor_id: str) -> None:
        """Repair a failed actor: the failure is cleared and it goes back to its last committed record;
        the turn that failed runs again (fix its cause first).  ValueError when it has not failed."""
        keys = ActorKeys.of(actor_id)
        raw = await self._write(keys.tag, "mva_retry", [5, keys.state, keys.lease, keys.work, keys.ready, keys.failed,
                                                  actor_id, uuid.uuid4().hex])
        status = text(raw[0])
        if status == "UNKNOWN":
            raise self._not_found(actor_id)
        if status == "NOT_FAILED":
            raise ValueError(f"actor {actor_id!r} has not failed; nothing to retry")
        await self._hint(actor_id)

    async def cancel(self, actor_id: str, message_id: str) -> bool:
        """Drop message ``message_id`` if it has not run: True (its caller gets :class:`mvactors.Cancelled`),
        False when it was already applied.  The message a gas pause holds at the head of the mailbox can be
        dropped too; the actor then goes on with the next.  ValueError for a message never sent."""
        if not isinstance(message_id, str) or not message_id:
            raise TypeError("message_id must be a non-empty str")
        keys = ActorKeys.of(actor_id)
        payload = pack([REPLY_CANCELLED, f"message {message_id} was cancelled before it ran"])
        raw = await self._write(keys.tag, "mva_cancel", [
            8, keys.state, keys.lease, keys.mailbox, keys.dedupe, keys.work, keys.ready, keys.paused,
            keys.reply(message_id), actor_id, message_id, payload])
        status = text(raw[0])
        if status == "UNKNOWN":
            raise self._not_found(actor_id)
        if status == "NOT_SENT":
            raise ValueError(f"actor {actor_id!r} has no message {message_id!r} (never sent, or sent over a day ago)")
        if status == "OK":
            await self._hint(actor_id)
        return status == "OK"

    async def snapshot(self, actor_id: str) -> bytes:
        """The actor's last committed state as a plain snapshot (``VM.restore`` and ``mvactors info`` open it),
        to debug it locally.  Awaited host calls are not part of a plain snapshot."""
        keys = ActorKeys.of(actor_id)
        link = self.link

        def reads(pipe: Any) -> None:
            pipe.hget(keys.state, "f")
            pipe.get(keys.record)
            pipe.exists(keys.state)

        fresh, saved, exists = await link.guarded(lambda: link.pipeline_once(reads))
        if not exists or saved is None:
            raise self._not_found(actor_id)
        if fresh:
            return bytes(saved)
        return ActorRecord.decode(stored_record(bytes(saved))).snapshot

    # ---- upgrade (issue 16) ----

    async def upgrade(self, actor_id: str, snapshot: SnapshotLike, migrate: tuple[int, int] | None = None,
                      timeout: float | None = None) -> None:
        """Deploy new code to a running actor, in mailbox order: mail sent before runs on the old code,
        mail sent after on the new.

        It is applied at a turn boundary with no host call or timer pending, waiting up to ``timeout``
        seconds (None: as long as it takes) for them.  With ``migrate=(OUT, IN)``, export OUT on the
        old code returns a plain value (copied), then the new snapshot is restored and export IN(value)
        runs on it; without, the new snapshot's own state replaces the old.  Atomic: on any failure the
        actor keeps its old code and state and :class:`mvactors.UpgradeFailed` says why.  One fenced
        write; ``describe()["code"]`` changes and history (if kept) records an "upgrade" turn.
        A worker must be running the actor's import table to reach the turn boundary.
        """
        if migrate is not None and (not isinstance(migrate, tuple) or len(migrate) != 2
                                    or not all(isinstance(x, int) and not isinstance(x, bool) for x in migrate)):
            raise TypeError(f"migrate must be (OUT, IN): two export IDs, not {migrate!r}")
        if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
            raise ValueError(f"timeout must be a positive number of seconds or None, not {timeout!r}")
        data = snapshot_bytes(snapshot)
        check_size(data)
        keys = ActorKeys.of(actor_id)
        old, old_snapshot = await self._current(actor_id)
        check_migrate(old_snapshot, data, migrate)  # a missing export fails before anything changes
        if (await self._describe(keys) or self._gone(actor_id)).failed:
            raise UpgradeFailed(f"actor {actor_id!r} has failed; repair it with retry() before upgrading it")
        message_id = await self._send(actor_id, UPGRADE_BARRIER, (), None, False)
        request = uuid.uuid4().hex
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        delay = 0.01
        while True:  # until the worker that reaches the barrier hands the actor back paused for it
            info = await self._describe(keys) or self._gone(actor_id)
            paused = json.loads(info.paused) if info.paused else None
            if paused and paused.get("reason") == "upgrade" and paused.get("message_id") == message_id:
                break
            if info.failed:
                raise UpgradeFailed(f"actor {actor_id!r} failed before the upgrade was reached: {info.failed}")
            if time.monotonic() >= deadline:
                await self._upgrade_write(keys, "", message_id, request, "ABORT", b"", "", b"")
                raise UpgradeFailed(f"actor {actor_id!r} was not at a turn boundary with nothing pending within "
                                    f"{timeout} s: {await self._pending_named(actor_id, info)}; the upgrade was "
                                    "withdrawn (try again with a longer timeout)")
            await anyio.sleep(delay)  # (polling: the pause is written by the worker's releasing commit)
            delay = min(delay * 2, 0.2)
        old, old_snapshot = await self._current(actor_id)  # the state at the barrier
        try:
            record = await new_record(old, old_snapshot, data, migrate, FRESH)
        except UpgradeFailed:
            await self._upgrade_write(keys, str(info.epoch), message_id, request, "FAIL", b"", "", b"")
            raise
        code = hashlib.sha256(data).hexdigest()
        entry = b""
        if info.history:
            entry = pack({"turn": info.turns + 1, "at": round(time.time(), 3), "kind": "upgrade", "export": None,
                          "args": None if migrate is None else list(migrate), "message_id": message_id,
                          "result": code, "host_calls": []})
        status = await self._upgrade_write(keys, str(info.epoch), message_id, request, "OK", record, code, entry)
        if status != "OK":
            raise UpgradeFailed(f"actor {actor_id!r} changed while the upgrade was made ({status}); it keeps its "
                                "old code: try again")
        await self._hint(actor_id)

    async def _pending_named(self, actor_id: str, info: Described) -> str:
        record, _ = await self._current(actor_id)
        if (record is None or not record.pending) and not info.owner:
            # Nobody leased it in all that time: the likeliest cause is that no worker serves its table.
            return (f"no worker took it up (is a worker running import table {info.imports!r}? "
                    "`mvactors workers` lists the live ones)")
        if record is None or not record.pending:
            return "its earlier mail had not all run"
        now = time.time()
        return ", ".join(f"host function {p.import_id} (call {p.token}) pending" if p.due is None else
                         f"a timer (call {p.token}) due in {max(0.0, p.due - now):.1f} s" for p in record.pending)

    async def _upgrade_write(self, keys: ActorKeys, epoch: str, message_id: str, request: str, outcome: str,
                             record: bytes, code: str, entry: bytes) -> str:
        raw = await self._write(keys.tag, "mva_upgrade", [
            11, keys.state, keys.lease, keys.mailbox, keys.record, keys.journal, keys.history, keys.history_records,
            keys.history_base, keys.work, keys.ready, keys.paused,
            keys.actor_id, epoch, message_id, request, outcome, record, code, entry])
        return text(raw[0])

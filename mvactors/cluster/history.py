"""History (issue 16): what each turn of an actor spawned with ``history=K`` did, kept in Redis.

Per kept turn, two list items land in the turn's own commit (``mva_commit``, fenced by the
epoch): the entry below, and the record after the turn (``T:hr``; fork and reset restore
one without re-running anything).  ``T:hb`` holds the record before the oldest kept turn,
where :func:`replay` starts.  Why a record per turn rather than only the base plus replay:
a record is a few hundred bytes (K=100 costs tens of KB per actor), fork and reset are then
a copy, and they need no import table in the client; the price is one ``record()`` and one
zlib per turn of those actors only (history=0 actors take none of this path).

An entry: ``{"turn", "at", "kind", "export", "args", "message_id", "result" | "error",
"host_calls": [{"import", "args", "result"}]}``; async host calls are listed with their
``token`` (and ``due`` for sleeps), and the completion turn that gets an outcome carries
``token``, ``ok`` and ``value``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..actors import Actor, ActorRecord, AsyncCall, HostCalls, Reply, Runtime, TurnOutcome
from ..errors import GuestError, MicroviumError
from ..imports import sleep
from ..vm import is_async_import
from .owned import Owned
from .wire import Mail, pack, storable_record, stored_record, unpack

FRESH = b"S"  # T:hb: the spawned snapshot follows (no turn ran before the kept ones)


def _plain(value: Any) -> Any:
    """A value as history stores it: as sent when msgpack carries it, else its repr."""
    try:
        pack(value)
    except TypeError:
        return repr(value)
    return value


def recording(imports: Mapping[int, Callable[..., Any]], log: list[dict[str, Any]]) -> dict[int, Callable[..., Any]]:
    """``imports`` with each synchronous host function wrapped to note its call and result in ``log``
    (only for actors that keep history: every other actor keeps the shared, unwrapped map)."""
    def wrap(import_id: int, fn: Callable[..., Any]) -> Callable[..., Any]:
        def noted(*args: Any) -> Any:
            result = fn(*args)
            log.append({"import": import_id, "args": [_plain(a) for a in args], "result": _plain(result)})
            return result
        return noted

    return {i: fn if is_async_import(fn) else wrap(i, fn) for i, fn in imports.items()}


def _outcome(reply: Reply | None) -> dict[str, Any]:
    if reply is None or not reply.done:
        return {"result": None}  # a completion or timer turn, or an async export not settled yet
    error = reply.error
    if error is None:
        return {"result": _plain(reply.result())}
    if isinstance(error, GuestError):
        return {"error": _plain(error.value)}
    return {"error": f"{type(error).__name__}: {error}"}


def note_turn(owned: Owned, actor: Actor, outcome: TurnOutcome, mail: Mail | None) -> None:
    """Keep what the turn that just ran did, and the record after it, for the actor's next commit."""
    assert owned.host_log is not None and owned.kept is not None and owned.delivered is not None
    calls: list[dict[str, Any]] = owned.host_log[:]
    owned.host_log.clear()
    for call in outcome.calls:
        noted: dict[str, Any] = {"import": call.import_id, "args": [_plain(a) for a in call.args],
                                 "token": call.token}
        if call.due is not None:
            noted["due"] = call.due
        calls.append(noted)
    entry: dict[str, Any] = {"turn": owned.turns, "at": round(time.time(), 3), "kind": outcome.kind,
                             "export": None, "args": None, "message_id": None}
    if mail is not None:
        entry.update(export=mail.export_id, args=mail.args, message_id=mail.message_id)
        entry.update(_outcome(outcome.reply))
    else:
        entry["result"] = None
        if outcome.kind == "completion" and owned.delivered:
            token, ok, value = owned.delivered.popleft()
            entry.update(token=token, ok=ok, value=_plain(value))
    if outcome.error is not None and "error" not in entry:
        entry["error"] = f"{type(outcome.error).__name__}: {outcome.error}"
    entry["host_calls"] = calls
    record = storable_record(actor.record(collect=None).encode(), compress=True)
    owned.kept.append((pack(entry), record))


def entries(raw: list[Any]) -> list[dict[str, Any]]:
    """The entries of ``T:h`` as LRANGE returns them, decoded."""
    return [unpack(bytes(item)) for item in raw]




# ---- what the client reads and runs: the kept window, and replay ----


@dataclass(frozen=True, slots=True)
class Kept:
    """An actor's kept history as Redis holds it: ``turns`` committed, the cap, the base record (stored
    form, or FRESH + the spawned snapshot) and the entries of turns ``turns - len(entries) + 1 .. turns``."""

    turns: int
    cap: int
    base: bytes | None
    entries: list[dict[str, Any]]
    records: list[bytes]  # the stored record after each entry's turn

    @property
    def first(self) -> int:
        """The earliest turn whose state is kept (the base: the state before the oldest kept entry)."""
        return self.turns - len(self.entries)

    def range_error(self, actor_id: str, turn: int) -> ValueError:
        """The ValueError for ``turn`` outside the kept range, naming it."""
        if self.base is None:
            return ValueError(f"actor {actor_id!r} keeps no history (spawn it with history=K to fork or reset it)")
        return ValueError(f"turn {turn} is outside the kept history of actor {actor_id!r}: turns "
                          f"{self.first}..{self.turns} are kept (history={self.cap})")


def base_state(base: bytes) -> tuple[ActorRecord | None, bytes]:
    """(record, None) for a stored record, or (None, snapshot) for the spawned snapshot."""
    if base.startswith(FRESH):
        return None, base[len(FRESH):]
    record = ActorRecord.decode(stored_record(base))
    return record, record.snapshot


class _Answers(HostCalls):
    """Host calls answered from the history: nothing runs, nothing is started, every call is noted."""

    def __init__(self) -> None:
        self.expected: list[dict[str, Any]] = []
        self.got: list[dict[str, Any]] = []
        self.started: list[AsyncCall] = []

    def call(self, actor: Actor, import_id: int, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        self.got.append({"import": import_id, "args": [_plain(a) for a in args]})
        n = len(self.got) - 1
        if n < len(self.expected) and self.expected[n]["import"] == import_id:
            return self.expected[n]["result"]
        return None

    def start(self, actor: Actor, call: AsyncCall) -> None:
        self.started.append(call)


_MAX_STUBS = 1024  # restores tried, one more stand-in each (import IDs in one snapshot: a few dozen at most)


async def _answered_later(*args: Any) -> None:  # an async import: its outcome comes from a completion entry
    return None


def _answered(*args: Any) -> None:  # a sync import: _Answers.call answers it from the entry
    return None


def _stubs(kept: Kept, record: ActorRecord | None) -> dict[int, Callable[..., Any]]:
    """An import map with a stand-in for every import the history or the base record names."""
    stubs: dict[int, Callable[..., Any]] = {}
    for entry in kept.entries:
        for call in entry["host_calls"]:
            if "due" in call:
                stubs[call["import"]] = sleep
            elif "token" in call:
                stubs[call["import"]] = _answered_later
            else:
                stubs[call["import"]] = _answered
    for pending in record.pending if record is not None else ():
        stubs.setdefault(pending.import_id, sleep if pending.due is not None else _answered_later)
    return stubs


def _calls(entry: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"import": c["import"], "args": c["args"]} for c in entry["host_calls"]]


async def replay(kept: Kept, snapshot: bytes | None) -> dict[str, Any]:
    """Run the kept history again in this process (see ``Client.replay``)."""
    assert kept.base is not None
    record, base_snapshot = base_state(kept.base)
    answers = _Answers()
    imports = _stubs(kept, record)
    async with Runtime(host_calls=answers) as runtime:
        for _ in range(_MAX_STUBS):
            try:
                if snapshot is not None:
                    actor = await runtime.spawn(snapshot, imports, "replay")
                elif record is not None:
                    actor = await runtime.adopt(record, "replay", imports)
                else:
                    actor = await runtime.spawn(base_snapshot, imports, "replay")
                break
            except MicroviumError as exc:
                # An import the kept turns never called: a stand-in that answers None (the snapshot
                # names its imports only by failing to restore without them).
                if exc.missing_import is None:
                    raise
                imports[exc.missing_import] = _answered
        else:
            raise ValueError("the snapshot imports more host functions than a replay stands in for")
        fired: set[int] = set()
        for entry in kept.entries:
            answers.expected = [c for c in entry["host_calls"] if "token" not in c]
            answers.got = []
            started = len(answers.started)
            reply: Reply | None = None
            if entry["kind"] == "message":
                reply = actor.submit(entry["export"], *entry["args"])
            elif entry["kind"] == "completion" and "token" in entry:
                actor.deliver(entry["token"], entry["ok"], entry["value"])
            elif entry["kind"] == "timer":
                sleeps = [c for c in answers.started if c.due is not None and c.token not in fired]
                if sleeps:
                    due = min(sleeps, key=lambda c: c.due or 0.0)
                    fired.add(due.token)
                    actor.deliver(due.token, True, None)
            await runtime.wait_idle()
            got_calls = answers.got + [{"import": c.import_id, "args": [_plain(a) for a in c.args]}
                                       for c in answers.started[started:]]
            if got_calls != _calls(entry):
                return _diverged(kept, entry, {"host_calls": _calls(entry)}, {"host_calls": got_calls})
            if reply is not None:
                expected: dict[str, Any] = {k: entry[k] for k in ("result", "error") if k in entry}
                got = _outcome(reply)
                if expected != got:
                    return _diverged(kept, entry, expected, got)
            if snapshot is None and actor.failure is None:
                index = entry["turn"] - kept.first - 1
                after = kept.records[index] if index < len(kept.records) else None
                if after is not None:
                    want = ActorRecord.decode(stored_record(after)).snapshot
                    if actor.record(collect=None).snapshot != want:
                        return _diverged(kept, entry, {"state": f"{len(want)} bytes"}, {"state": "different"})
    return {"turns": len(kept.entries), "diverged": None}


def _diverged(kept: Kept, entry: dict[str, Any], expected: dict[str, Any], got: dict[str, Any]) -> dict[str, Any]:
    return {"turns": entry["turn"] - kept.first, "diverged": {"turn": entry["turn"], "expected": expected,
                                                              "got": got}}


__all__ = ["FRESH", "Kept", "base_state", "entries", "note_turn", "recording", "replay"]

"""``ActorRecord``: an actor at rest, typed, and its versioned msgpack encoding.

A record is what survives a process: the VM's snapshot, where its awaited
host calls continue, and what it awaits.  Sleeps carry their absolute due time
in wall-clock seconds since the epoch, so another process fires them on time,
not after a fresh wait; a runtime on a simulated clock resumes them with the
time they had left when the record was written.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgpack

from ..errors import ActorError, RecordCorrupt
from ..imports import AsyncCall, AsyncImport, sleep
from ..vm import Hibernation
from .clock import Clock, from_wall_time

RECORD_VERSION = 2  # 1: sleeps stored as seconds left, no turn count, no written_at


@dataclass(frozen=True, slots=True)
class PendingCall:
    """An asynchronous host call the actor awaits: re-issued (or re-armed, for a sleep) on adoption."""

    token: int
    location: int  # where in the snapshot heap the guest's continuation is
    import_id: int
    args: tuple[Any, ...]
    due: float | None = None  # sleeps: absolute wall time, seconds since the epoch


@dataclass(frozen=True, slots=True)
class ActorRecord:
    """An actor between turns, as bytes can carry it (``encode``/``decode``)."""

    snapshot: bytes
    next_token: int = 1
    pending: tuple[PendingCall, ...] = ()
    refs: tuple[tuple[int, int], ...] = ()  # the runtime's keys -> locations of kept guest values
    quota_left: int | None = None
    turns: int = 0  # committed turns of the actor's whole life
    # Wall time the record was made: a simulated clock resumes its sleeps with the time they had
    # left then, however much real time passes before adoption (simulations replay the same).
    written_at: float = 0.0

    @classmethod
    def from_hibernation(cls, hibernation: Hibernation, pending: dict[int, tuple[int, tuple[Any, ...], float | None]],
                         quota_left: int | None, turns: int, written_at: float = 0.0) -> ActorRecord:
        """A record of ``hibernation`` (kept by int keys) whose awaited calls ``pending`` describes (token ->
        import ID, arguments, wall due time)."""
        calls = []
        for token, location in hibernation.async_calls.items():
            import_id, args, due = pending.get(token, (0, (), None))
            calls.append(PendingCall(token, location, import_id, args, due))
        return cls(hibernation.snapshot, hibernation.next_token, tuple(calls), tuple(hibernation.refs.items()),
                   quota_left, turns, written_at)

    def hibernation(self) -> Hibernation:
        """The VM part of the record, for :meth:`VM.wake`."""
        # On every wake of a hibernated actor: most await nothing and keep nothing.
        pending, refs = self.pending, self.refs
        return Hibernation(self.snapshot, {p.token: p.location for p in pending} if pending else {},
                           dict(refs) if refs else {}, self.next_token)

    def awaited_calls(self, actor_id: str, imports: Mapping[int, Callable[..., Any]], clock: Clock) -> list[AsyncCall]:
        """The async host calls the recorded actor awaits, to start again where it is adopted (a sleep
        keeps its due time, on ``clock``).  ActorError ``MVA_UNRESOLVED_IMPORT`` for one ``imports`` lacks."""
        calls = []
        for p in self.pending:
            due = None if p.due is None else from_wall_time(clock, p.due, self.written_at)
            fn = imports.get(p.import_id, sleep if due is not None else None)
            if fn is None:
                raise ActorError(f"actor {actor_id!r} awaits host function {p.import_id}, which is not in "
                                 "the import map", "MVA_UNRESOLVED_IMPORT")
            fn = fn.fn if isinstance(fn, AsyncImport) else fn
            calls.append(AsyncCall(actor_id, p.token, p.import_id, fn, p.args, due))
        return calls

    def encode(self) -> bytes:
        """msgpack bytes, versioned.  Arguments msgpack cannot carry are recorded as None."""
        packed: bytes = msgpack.packb(
            [RECORD_VERSION, self.snapshot, self.next_token,
             [[p.token, p.location, p.import_id, list(p.args), p.due] for p in self.pending],
             [list(r) for r in self.refs], self.quota_left, self.turns, self.written_at],
            use_bin_type=True, default=_unpackable,
        )
        return packed

    @classmethod
    def decode(cls, data: bytes) -> ActorRecord:
        """Inverse of :meth:`encode`; raises RecordCorrupt on anything that is not a whole record."""
        try:
            fields = msgpack.unpackb(data, raw=False, strict_map_key=False)
        except Exception as exc:
            raise RecordCorrupt(f"not an mvactors actor record: {str(exc) or type(exc).__name__}") from None
        if not isinstance(fields, list) or not fields:
            raise RecordCorrupt(f"not an mvactors actor record: a {type(fields).__name__}, not a list")
        version = fields[0]
        try:
            if version == RECORD_VERSION and len(fields) == 8:
                return cls._from_fields(fields[1:], wall_due=True)
            if version == 1 and len(fields) == 6:
                return cls._from_fields(fields[1:] + [0, time.time()], wall_due=False)
        except (TypeError, ValueError) as exc:
            raise RecordCorrupt(f"malformed actor record: {exc}") from None
        if version in (1, RECORD_VERSION):
            raise RecordCorrupt(f"malformed actor record: {len(fields)} fields for version {version}")
        raise RecordCorrupt(f"actor record version {version!r} is not supported (this mvactors reads 1 and 2)")

    @classmethod
    def _from_fields(cls, fields: list[Any], wall_due: bool) -> ActorRecord:
        snapshot, next_token, pending, refs, quota_left, turns, written_at = fields
        if type(snapshot) is not bytes:
            raise TypeError(f"snapshot is a {type(snapshot).__name__}, not bytes")
        calls: tuple[PendingCall, ...] = ()
        if pending:
            listed = []
            for token, location, import_id, args, due in pending:
                if due is not None:
                    due = float(due) if wall_due else float(written_at) + float(due)
                if type(args) is not list:
                    raise TypeError(f"arguments of pending call {token!r} are a {type(args).__name__}, not a list")
                listed.append(PendingCall(_int(token), _int(location), _int(import_id), tuple(args), due))
            calls = tuple(listed)
        kept = tuple((_int(k), _int(v)) for k, v in refs) if refs else ()
        if type(written_at) not in (int, float):
            raise TypeError(f"written_at is a {type(written_at).__name__}, not a number")
        if type(next_token) is not int or type(turns) is not int or not (
                quota_left is None or type(quota_left) is int) or type(pending) is not list or type(refs) is not list:
            raise TypeError("next_token, turns and quota_left are ints, pending and refs lists")
        return cls(snapshot, next_token, calls, kept, quota_left, turns, float(written_at))


def _int(value: Any) -> int:
    if type(value) is not int:
        raise TypeError(f"expected an int, got {type(value).__name__}")
    return value


def _unpackable(value: Any) -> Any:
    # Values msgpack cannot carry (proxies of functions, ...) are recorded as None:
    # re-issuing such a host call after a restore gets None for that argument.
    return None

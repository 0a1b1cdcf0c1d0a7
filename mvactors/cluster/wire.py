"""The wire protocol between processes and the functions in Redis: one owner for every format.

- values (messages, replies, journal entries): msgpack, with JS ``null`` kept apart from
  ``undefined`` (``None``);
- reply payloads ``[code, value]`` with the ``REPLY_*`` codes, written by the worker and
  read by the client;
- records as ``T:c`` holds them (compressed once an actor hibernates in Redis);
- each server-side function's arguments, and its reply as a typed NamedTuple (no caller
  parses a reply by position).
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

import msgpack

from ..actors import GasPolicy, Reply
from ..errors import GuestError, RecordCorrupt
from ..vm import null
from .keys import ActorKeys

# ---- values: msgpack with JS null kept apart from undefined (None) ----

_NULL_EXT = 1


def _default(value: Any) -> Any:
    if value is null:
        return msgpack.ExtType(_NULL_EXT, b"")
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot send a {type(value).__name__} to an actor; use None, bool, int, float, str, "
                    "bytes, lists and dicts of them, or mvactors.null")


def _ext_hook(code: int, data: bytes) -> Any:
    if code == _NULL_EXT:
        return null
    return msgpack.ExtType(code, data)


def pack(value: Any) -> bytes:
    """Encode a message, reply or journal entry; TypeError names an unsupported value."""
    try:
        return cast(bytes, msgpack.packb(value, default=_default, use_bin_type=True, strict_types=False))
    except (OverflowError, ValueError) as exc:
        raise TypeError(f"cannot send this value to an actor: {exc}") from None


def unpack(data: bytes) -> Any:
    """Decode what :func:`pack` encoded."""
    return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False)


def text(value: Any) -> str:
    """A Redis reply (bytes or str) as text."""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


# ---- reply payloads: [code, value] ----

REPLY_OK, REPLY_GUEST_ERROR, REPLY_FAILED, REPLY_UNSENDABLE, REPLY_CANCELLED = 0, 1, 2, 3, 4


def reply_payload(reply: Reply) -> bytes:
    """The payload of a settled turn's reply, as the caller's reply key receives it."""
    try:
        value = reply.result()
    except GuestError as exc:
        try:
            return pack([REPLY_GUEST_ERROR, exc.value])
        except TypeError:
            return pack([REPLY_GUEST_ERROR, repr(exc.value)])
    except Exception as exc:
        return pack([REPLY_FAILED, f"{type(exc).__name__}: {exc}"])
    try:
        return pack([REPLY_OK, value])
    except TypeError as exc:
        return pack([REPLY_UNSENDABLE, str(exc)])


def failed_payload(reason: str) -> bytes:
    """The payload every waiting caller of a failed actor receives."""
    return pack([REPLY_FAILED, reason])


class ReplyPayload(NamedTuple):
    """A decoded reply payload: ``code`` is one of the ``REPLY_*`` codes."""

    code: int
    value: Any

    @classmethod
    def decode(cls, data: bytes) -> ReplyPayload:
        code, value = unpack(data)
        return cls(int(code), value)


# ---- gas policies, as the actor's state hash keeps them ----


def encode_gas(gas: GasPolicy | None) -> bytes:
    """A gas policy as ``spawn`` stores it (empty: none)."""
    if gas is None:
        return b""
    return pack([gas.per_turn, gas.quota, gas.refill_per_second])


def decode_gas(data: bytes) -> GasPolicy | None:
    """What :func:`encode_gas` stored."""
    if not data:
        return None
    per_turn, quota, refill = unpack(data)
    return GasPolicy(per_turn=per_turn, quota=quota, refill_per_second=refill)


# ---- records as T:c holds them ----

# A released (hibernating) actor's record is stored compressed: a ~1 KB record is then ~30% smaller, which
# takes its string below jemalloc's 1 KiB size class.  Per-turn records stay plain (zlib costs ~30 µs).
_COMPRESSED = b"Z"  # a msgpack positive fixint: never the first byte of an ActorRecord encoding


def storable_record(encoded: bytes, compress: bool) -> bytes:
    """An ActorRecord encoding as T:c holds it: compressed for actors that go to sleep in Redis."""
    return _COMPRESSED + zlib.compress(encoded, 6) if compress else encoded


def stored_record(value: bytes) -> bytes:
    """The ActorRecord encoding in a T:c value (RecordCorrupt when a compressed one is damaged)."""
    if not value.startswith(_COMPRESSED):
        return value
    try:
        return zlib.decompress(value[1:])
    except zlib.error as exc:
        raise RecordCorrupt(f"not an mvactors actor record: its compressed bytes are damaged ({exc})") from None


# ---- mva_send / mva_describe / mva_spawn / mva_delete (the client's calls) ----


class SendReply(NamedTuple):
    """``mva_send``: ``status`` OK | DUP | UNKNOWN | FAILED; ``owner`` is the lease holder ("" for none)."""

    status: str
    owner: str = ""
    reason: str = ""  # why it failed (FAILED)

    @classmethod
    def decode(cls, raw: list[Any]) -> SendReply:
        status = text(raw[0])
        if status == "FAILED":
            return cls(status, reason=text(raw[1]))
        if status == "UNKNOWN":
            return cls(status)
        return cls(status, owner=text(raw[2]))


class Described(NamedTuple):
    """``mva_describe`` (and each actor of ``mva_inventory``): the actor as Redis has it."""

    turns: int
    failed: str  # why it failed, "" when it did not
    imports: str
    owner: str  # the lease holder, "" when none
    mailbox: int  # messages not yet applied
    epoch: int
    code: str = ""  # hex SHA-256 of the snapshot given to spawn/upgrade
    history: int = 0  # turns of history kept
    paused: str = ""  # JSON {reason, since, detail, ...}, "" when not paused
    last_failure: str = ""  # JSON {at, message_id, export, error, awaited}, "" when none

    @classmethod
    def decode(cls, raw: list[Any]) -> Described | None:
        """None for an actor that is not stored."""
        if not raw:
            return None
        return cls(int(raw[0]), text(raw[1]), text(raw[2]), text(raw[3]), int(raw[4]), int(raw[5]),
                   text(raw[6]), int(raw[7]), text(raw[8]), text(raw[9]))

    @property
    def state(self) -> str:
        """"failed", "paused", "running" (a worker holds it) or "idle"."""
        if self.failed:
            return "failed"
        if self.paused:
            return "paused"
        return "running" if self.owner else "idle"

    def public(self) -> dict[str, Any]:
        """The dict ``Client.describe`` returns (and ``Client.actors`` yields, plus "id")."""
        return {
            "owner": self.owner or None,
            "turns": self.turns,
            "mailbox": self.mailbox,
            "imports": self.imports or None,
            "failed": self.failed or None,
            "epoch": self.epoch,
            "state": self.state,
            "paused": _public_pause(self.paused),
            "code": self.code or None,
            "history": self.history,
            "last_failure": json.loads(self.last_failure) if self.last_failure else None,
        }


def _public_pause(raw: str) -> dict[str, Any] | None:
    if not raw:
        return None
    pause = json.loads(raw)
    return {"reason": pause["reason"], "since": pause["since"], "detail": pause.get("detail", ""),
            **{k: v for k, v in pause.items() if k not in ("reason", "since", "detail")}}


def inventory_args(keys: list[ActorKeys]) -> list[Any]:
    """The keys and arguments of one ``mva_inventory`` call (actors of one partition)."""
    names = [name for k in keys for name in (k.state, k.lease, k.mailbox)]
    return [len(names), *names, *[k.actor_id for k in keys]]


def inventoried(blob: bytes) -> list[tuple[str, Described]]:
    """``mva_inventory``'s reply: (actor ID, what describe gives) of each actor still stored."""
    out = []
    for row in msgpack.unpackb(blob, raw=False):
        described = Described.decode(row[1:])
        assert described is not None
        out.append((row[0], described))
    return out


def spawn_args(keys: ActorKeys, snapshot: bytes, imports: str, gas: bytes, code: str, history: int) -> list[Any]:
    """The keys and arguments of ``mva_spawn``."""
    if history:  # its replay starts from the spawned snapshot until K turns have run
        return [4, keys.state, keys.record, keys.all, keys.history_base, snapshot, imports, gas, code, history,
                keys.actor_id]
    return [3, keys.state, keys.record, keys.all, snapshot, imports, gas, code, history, keys.actor_id]


def delete_args(keys: ActorKeys) -> list[Any]:
    """The keys and arguments of ``mva_delete``."""
    return [14, keys.state, keys.lease, keys.mailbox, keys.dedupe, keys.journal, keys.work, keys.ready,
            keys.record, keys.all, keys.failed, keys.paused, keys.history, keys.history_records, keys.history_base,
            keys.actor_id]


def spawned(raw: list[Any]) -> bool:
    """``mva_spawn``: True when stored, False when an actor with that ID exists."""
    return text(raw[0]) == "OK"


# ---- mva_acquire ----


def acquire_args(keys: ActorKeys, worker_id: str, lease_ms: int) -> list[Any]:
    """The keys and arguments of ``mva_acquire``."""
    return [7, keys.state, keys.lease, keys.journal, keys.work, keys.ready, keys.record, keys.paused,
            keys.actor_id, worker_id, lease_ms]


class Acquired(NamedTuple):
    """``mva_acquire`` answered OK: the lease is ours under ``epoch``, and this is what Redis has."""

    epoch: str
    saved: bytes  # the last committed record (stored form), or the spawned snapshot when ``fresh``
    fresh: bool
    turns: int
    pos: str  # the last applied mailbox stream ID
    imports: str  # import table name, "" for none
    gas: GasPolicy | None
    settling: str  # JSON [[promise key, reply key]...]
    journal: dict[int, bytes]
    previous_owner: str = ""  # the worker whose lease lapsed (a takeover); "" when it was released
    gas_grant: str = ""  # "<per_turn|quota>:<extra gas>" (resume(extra_gas=)), "refill:" (the quota refilled), ""
    history: int = 0  # turns of history to keep


class NotAcquired(NamedTuple):
    """``mva_acquire`` did not give the lease: ``status`` BUSY (``detail``: holder), FAILED (why), UNKNOWN."""

    status: str
    detail: str = ""


class CorruptState(ValueError):
    """An acquire's reply holds state no worker wrote; ``epoch`` fences the write that fails the actor."""

    def __init__(self, epoch: str, reason: str) -> None:
        super().__init__(reason)
        self.epoch = epoch


def decode_acquire(raw: list[Any]) -> Acquired | NotAcquired:
    """``mva_acquire``'s reply; CorruptState when the actor's state in Redis does not decode."""
    status = text(raw[0])
    if status != "OK":
        return NotAcquired(status, text(raw[1]) if len(raw) > 1 else "")
    epoch = text(raw[1])
    try:
        journal_raw = raw[12:]
        return Acquired(epoch, bytes(raw[2]), text(raw[3]) == "1", int(raw[4]), text(raw[5]), text(raw[6]),
                        decode_gas(raw[7]), text(raw[8]),
                        {int(journal_raw[i]): journal_raw[i + 1] for i in range(0, len(journal_raw), 2)},
                        text(raw[9]), text(raw[10]), int(raw[11]))
    except (ValueError, TypeError, IndexError) as exc:  # (UnicodeDecodeError is a ValueError)
        raise CorruptState(epoch, f"{type(exc).__name__}: {exc}") from None


# ---- mva_renew ----


def renew_args(members: list[tuple[ActorKeys, str]], worker_id: str, lease_ms: int) -> list[Any]:
    """The keys and arguments of one ``mva_renew`` call for (keys, epoch) of actors of one partition."""
    return [1 + len(members), members[0][0].work, *[k.lease for k, _ in members], worker_id, lease_ms,
            *[x for k, epoch in members for x in (k.actor_id, epoch)]]


def renewed(raw: list[Any]) -> list[bool]:
    """``mva_renew``'s reply: per lease, whether it is still ours (and renewed)."""
    return [int(ok) == 1 for ok in raw]


# ---- mva_commit ----


@dataclass(slots=True)
class CommitEntry:
    """One actor's part of an ``mva_commit`` call: what a turn (or several) left behind."""

    keys: ActorKeys
    epoch: str
    prev_turns: int  # the committed turn count this commit builds on (fencing against a stale owner)
    turns: int
    pos: str  # the last applied mailbox stream ID
    record: bytes
    release: bool = False
    due_ms: int | None = None  # when an owner should next look at it (its earliest pending call or sleep)
    next_token: int = 1
    pending: list[int] = field(default_factory=list)  # tokens of the host calls the record awaits
    replies: list[tuple[str, bytes]] = field(default_factory=list)  # (reply key, payload)
    settling: str = ""
    last_failure: str = ""  # JSON of the last failed turn since the previous commit ("" for none)
    pause: str = ""  # JSON of a gas pause, written with this (releasing) commit ("" for none)
    history: list[tuple[bytes, bytes]] | None = None  # (entry, record after it) per turn: history kept
    history_cap: int = 0


def commit_args(worker_id: str, entries: list[CommitEntry]) -> list[Any]:
    """The keys and arguments of one ``mva_commit`` call for ``entries`` (actors of one partition).

    Every key is declared; everything else travels as one msgpack argument (Lua's cmsgpack
    reads no bin type, so bytes go as raw strings)."""
    keys = entries[0].keys
    names: list[Any] = [keys.work, keys.ready, keys.paused]
    body = []
    for e in entries:
        k = e.keys
        names += (k.state, k.lease, k.mailbox, k.journal, k.record)
        fields = [k.actor_id, e.epoch, e.prev_turns, e.turns, e.pos, e.release,
                  "" if e.due_ms is None else str(e.due_ms), e.next_token, e.pending, e.settling, e.record,
                  [payload for _, payload in e.replies], e.last_failure, e.pause]
        if e.history:  # (only actors that keep history: the others send what they always sent)
            names += (k.history, k.history_records, k.history_base)
            fields += [[list(item) for item in e.history], e.history_cap]
        names += [key for key, _ in e.replies]
        body.append(fields)
    return [len(names), *names, worker_id, msgpack.packb(body, use_bin_type=False)]


class CommitStatus(NamedTuple):
    """One actor's outcome in an ``mva_commit``: OK | DUP (landed) | FENCED | CONFLICT | UNKNOWN | ERROR."""

    status: str
    detail: str = ""  # the epoch or turn count Redis holds (FENCED, CONFLICT); the error (ERROR)

    @property
    def landed(self) -> bool:
        return self.status in ("OK", "DUP")


_COMMIT_OK = CommitStatus("OK")


def commit_statuses(raw: Any, count: int) -> list[CommitStatus]:
    """``mva_commit``'s reply (or the error the pipeline gave in its place) for ``count`` actors."""
    if isinstance(raw, Exception):
        return [CommitStatus("ERROR", str(raw))] * count
    out = []
    for one in raw:
        if one == b"OK":  # (nearly every status: one shared tuple, no decoding)
            out.append(_COMMIT_OK)
            continue
        status, _, detail = text(one).partition(" ")
        out.append(CommitStatus(status, detail))
    return out


# ---- mva_fetch ----


class Mail(NamedTuple):
    """One mailbox entry, as read from the actor's stream."""

    stream_id: str
    message_id: str
    export_id: int
    args: list[Any]
    wants_reply: bool


UPGRADE_BARRIER = -1  # the export ID of an upgrade's mailbox entry: the worker stops before it (Client.upgrade)


def message_payload(export_id: int, args: tuple[Any, ...] | list[Any], wants_reply: bool) -> bytes:
    """A mailbox entry's body (TypeError for arguments that cannot cross processes)."""
    return pack([export_id, list(args), wants_reply])


def fetch_args(mailboxes: list[tuple[str, str]], count: int) -> list[Any]:
    """The keys and arguments of one ``mva_fetch`` call: (mailbox key, last stream ID read) of one partition."""
    return [len(mailboxes), *[key for key, _ in mailboxes], count, *[pos for _, pos in mailboxes]]


def fetched(blob: bytes) -> list[list[Mail]]:
    """``mva_fetch``'s reply: per mailbox, its entries."""
    out = []
    for flat in msgpack.unpackb(blob, raw=True):
        mails = []
        for i in range(0, len(flat), 3):
            export_id, args, wants_reply = unpack(flat[i + 2])
            mails.append(Mail(flat[i].decode(), flat[i + 1].decode(), export_id, args, wants_reply))
        out.append(mails)
    return out


# ---- mva_journal / mva_fail / mva_take_ready ----


def journal_args(keys: ActorKeys, worker_id: str, epoch: str, token: int, entry: bytes) -> list[Any]:
    """The keys and arguments of ``mva_journal``."""
    return [3, keys.state, keys.lease, keys.journal, worker_id, epoch, token, entry]


class JournalReply(NamedTuple):
    """``mva_journal``: OK (written) | DUP (``entry``: the one already there) | FENCED | UNKNOWN."""

    status: str
    entry: bytes | None = None

    @classmethod
    def decode(cls, raw: list[Any]) -> JournalReply:
        status = text(raw[0])
        return cls(status, bytes(raw[1]) if status == "DUP" else None)


def fail_args(keys: ActorKeys, worker_id: str, epoch: str, reason: str, read_pos: str,
              reply_keys: list[str], stage: bool = False) -> list[Any]:
    """The keys and arguments of ``mva_fail``: ``reply_keys`` of every caller known to wait, and the
    last mailbox entry read (Redis refuses with MORE while mail after it may have callers); ``stage``:
    hold the replies in the actor's hash until ``mva_publish`` (replica_acks)."""
    return [6 + len(reply_keys), keys.state, keys.lease, keys.mailbox, keys.work, keys.ready, keys.failed, *reply_keys,
            keys.actor_id, worker_id, epoch, reason, read_pos, failed_payload(reason), *(["1"] if stage else [])]


class FailReply(NamedTuple):
    """``mva_fail``: OK | FENCED | UNKNOWN | MORE (mail after the position given: read it first)."""

    status: str

    @classmethod
    def decode(cls, raw: list[Any]) -> FailReply:
        return cls(text(raw[0]))


def taken_ready(raw: list[Any]) -> list[str]:
    """``mva_take_ready``'s reply: owned actors with new mail."""
    return [text(actor_id) for actor_id in raw]


# ---- staged replies (replica_acks) ----


def staged_keys(raw: Any) -> list[str]:
    """The reply keys in an actor's staged replies (its hash field ``y``: msgpack [key, payload, ...])."""
    if not raw:
        return []
    items = msgpack.unpackb(raw, raw=True)
    return [text(items[i]) for i in range(0, len(items), 2)]

"""Talking to Redis: connections, key names, the functions library, and the value codec.

Actors are spread over ``PARTITIONS`` hash tags; every key of an actor and its
partition's work index share the tag, so each function call touches one slot and
the work index changes atomically with the mail and the lease.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import msgpack
import redis.asyncio
import redis.asyncio.cluster
import redis.exceptions

from ..errors import RecordCorrupt
from ..vm import null
from ._functions import LIBRARY, VERSION
from .errors import FunctionsMismatch, RedisUnreachable

log = logging.getLogger("mvactors")

PARTITIONS = 32
PREFIX = "mva"
HINT_FREE = "mva:{hint}:free"

Redis = redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster
T = TypeVar("T")


def partition(actor_id: str) -> int:
    return zlib.crc32(actor_id.encode("utf-8")) % PARTITIONS


def partition_tag(index: int) -> str:
    return f"{PREFIX}:{{p{index}}}"


class ActorKeys:
    """The Redis key names of one actor (all in its partition's slot), built once: every turn's commit names them."""

    __slots__ = ("actor_id", "dedupe", "journal", "lease", "mailbox", "ready", "record", "state", "tag", "work")

    def __init__(self, actor_id: str, tag: str) -> None:
        self.actor_id, self.tag = actor_id, tag
        self.state = f"{tag}:a:{actor_id}"
        self.record = f"{tag}:c:{actor_id}"
        self.lease = f"{tag}:l:{actor_id}"
        self.mailbox = f"{tag}:m:{actor_id}"
        self.dedupe = f"{tag}:d:{actor_id}"
        self.journal = f"{tag}:j:{actor_id}"
        self.work = f"{tag}:work"
        self.ready = f"{tag}:ready"

    @classmethod
    def of(cls, actor_id: str) -> ActorKeys:
        return cls(actor_id, partition_tag(partition(actor_id)))

    def reply(self, message_id: str) -> str:
        return f"{self.tag}:r:{self.actor_id}:{message_id}"


def hint_key(worker_id: str) -> str:
    """The wake-up stream of one worker (same slot as HINT_FREE, so one XREAD blocks on both)."""
    return f"mva:{{hint}}:w:{worker_id}"


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
    return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False)


# ---- connections ----


def open_redis(url: str, *, socket_timeout: float | None = 5.0, max_connections: int = 100) -> Redis:
    """A client for ``redis://`` / ``rediss://`` / ``unix://`` URLs, or a cluster client for ``redis+cluster://``."""
    if url.startswith(("redis+cluster://", "rediss+cluster://")):
        plain = url.replace("+cluster", "", 1)
        return redis.asyncio.cluster.RedisCluster.from_url(plain, socket_timeout=socket_timeout,
                                                           max_connections=max_connections)
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError(f"not a Redis URL: {url!r} (use redis://host:port/db or redis+cluster://host:port)")
    extra: dict[str, Any] = {}
    if _CPackingConnection is not None and url.startswith("redis://"):
        extra["connection_class"] = _CPackingConnection
    return redis.asyncio.Redis.from_url(url, socket_timeout=socket_timeout, max_connections=max_connections,
                                        **extra)


def _c_packing_connection() -> type[redis.asyncio.Connection] | None:
    """A connection that encodes commands with hiredis, when installed: a group commit names dozens of
    keys, and redis-py's asyncio connection encodes each argument in Python."""
    try:
        import hiredis
    except ImportError:
        return None

    class CPackingConnection(redis.asyncio.Connection):
        def pack_command(self, *args: Any) -> list[bytes]:
            if isinstance(args[0], str) and " " in args[0]:  # "FUNCTION LOAD": two words of the command
                args = (*args[0].split(), *args[1:])
            try:
                return [hiredis.pack_command(args)]
            except TypeError as exc:
                raise redis.exceptions.DataError(str(exc)) from None

    return CPackingConnection


_CPackingConnection = _c_packing_connection()


UNREACHABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
               redis.exceptions.ClusterDownError, redis.exceptions.BusyLoadingError,
               redis.exceptions.TryAgainError, redis.exceptions.MaxConnectionsError, OSError)


async def guarded(url: str, action: Callable[[], Awaitable[T]]) -> T:
    """Run one Redis request; connection trouble becomes RedisUnreachable naming the URL."""
    try:
        return await action()
    except redis.exceptions.RedisClusterException as exc:
        raise RedisUnreachable(f"Redis Cluster at {url} is unreachable: {exc}") from exc
    except UNREACHABLE as exc:
        raise RedisUnreachable(f"Redis at {url} is unreachable: {exc}") from exc


async def load_functions(client: Redis) -> None:
    """Load the functions library on every primary, unless the same or a newer version is there."""
    if isinstance(client, redis.asyncio.cluster.RedisCluster):
        await client.initialize()
        for node in client.get_primaries():
            await _load_on(client, node)
    else:
        await _load_on(client, None)


async def _load_on(client: Redis, node: Any) -> None:
    kwargs: dict[str, Any] = {} if node is None else {"target_nodes": node}
    try:
        loaded = int(await client.execute_command("FCALL", "mva_version", 0, **kwargs))
    except redis.exceptions.ResponseError:
        loaded = 0  # not loaded yet
    if loaded > VERSION:
        raise FunctionsMismatch(f"Redis has mvactors functions version {loaded}; this mvactors knows "
                                f"version {VERSION}: upgrade this process")
    if loaded < VERSION:
        await client.execute_command("FUNCTION LOAD", "REPLACE", LIBRARY, **kwargs)
        log.info("loaded mvactors functions version %d%s", VERSION, f" on {node.name}" if node else "")


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


def commit_args(worker_id: str, entries: list[CommitEntry]) -> list[Any]:
    """The keys and arguments of one ``mva_commit`` call for ``entries`` (actors of one partition).

    Every key is declared; everything else travels as one msgpack argument (Lua's cmsgpack
    reads no bin type, so bytes go as raw strings)."""
    keys = entries[0].keys
    names: list[Any] = [keys.work, keys.ready]
    body = []
    for e in entries:
        k = e.keys
        names += (k.state, k.lease, k.mailbox, k.journal, k.record)
        names += [key for key, _ in e.replies]
        body.append([k.actor_id, e.epoch, e.prev_turns, e.turns, e.pos, e.release,
                     "" if e.due_ms is None else str(e.due_ms), e.next_token, e.pending, e.settling, e.record,
                     [payload for _, payload in e.replies]])
    return [len(names), *names, worker_id, msgpack.packb(body, use_bin_type=False)]


def fetch_args(mailboxes: list[tuple[str, str]], count: int) -> list[Any]:
    """The keys and arguments of one ``mva_fetch`` call: (mailbox key, last stream ID read) of one partition."""
    return [len(mailboxes), *[key for key, _ in mailboxes], count, *[pos for _, pos in mailboxes]]


def fetched(blob: bytes) -> list[list[tuple[str, str, bytes]]]:
    """``mva_fetch``'s reply: per mailbox, its (stream ID, message_id, payload) entries."""
    out = []
    for flat in msgpack.unpackb(blob, raw=True):
        out.append([(flat[i].decode(), flat[i + 1].decode(), flat[i + 2]) for i in range(0, len(flat), 3)])
    return out


def text(value: Any) -> str:
    """A Redis reply (bytes or str) as text."""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)

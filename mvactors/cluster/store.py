"""Talking to Redis: connections, key names, the functions library, and the value codec.

Actors are spread over ``PARTITIONS`` hash tags; every key of an actor and its
partition's work index share the tag, so each function call touches one slot and
the work index changes atomically with the mail and the lease.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import msgpack
import redis.asyncio
import redis.asyncio.cluster
import redis.exceptions

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


@dataclass(frozen=True, slots=True)
class ActorKeys:
    """The Redis key names of one actor (all in its partition's slot)."""

    actor_id: str
    tag: str

    @classmethod
    def of(cls, actor_id: str) -> ActorKeys:
        return cls(actor_id, partition_tag(partition(actor_id)))

    @property
    def state(self) -> str:
        return f"{self.tag}:a:{self.actor_id}"

    @property
    def record(self) -> str:
        return f"{self.tag}:c:{self.actor_id}"

    @property
    def lease(self) -> str:
        return f"{self.tag}:l:{self.actor_id}"

    @property
    def mailbox(self) -> str:
        return f"{self.tag}:m:{self.actor_id}"

    @property
    def dedupe(self) -> str:
        return f"{self.tag}:d:{self.actor_id}"

    @property
    def journal(self) -> str:
        return f"{self.tag}:j:{self.actor_id}"

    @property
    def work(self) -> str:
        return f"{self.tag}:work"

    @property
    def ready(self) -> str:
        return f"{self.tag}:ready"

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
    return redis.asyncio.Redis.from_url(url, socket_timeout=socket_timeout, max_connections=max_connections)


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


def commit_meta(actor_id: str, epoch: str, prev_turns: int, turns: int, pos: str, release: bool, due_ms: int | None,
                next_token: int, pending: list[int], replies: int, settling: str = "") -> bytes:
    """The per-actor header of an ``mva_commit`` call (Lua's cmsgpack reads no bin type: strings only)."""
    return cast(bytes, msgpack.packb([actor_id, epoch, prev_turns, turns, pos, release,
                                      "" if due_ms is None else str(due_ms), next_token, pending, replies,
                                      settling],
                                     use_bin_type=False))


def text(value: Any) -> str:
    """A Redis reply (bytes or str) as text."""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)

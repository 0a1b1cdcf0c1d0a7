"""``RedisLink``: the connections of a client or worker to one Redis (or Redis Cluster).

One owner for: the URL forms, the two connection pools (a blocking read gets its own, with
a socket timeout longer than its BLOCK: redis-py#2807), cluster routing of ``FUNCTION
LOAD``, what counts as "unreachable", and the one retry policy (redis-py's ``Retry`` with
equal-jitter backoff from 50 ms to 1 s, for as long as it takes).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio
import redis.asyncio.cluster
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import EqualJitterBackoff

from ._functions import LIBRARY, VERSION
from .errors import FunctionsMismatch, RedisUnreachable

log = logging.getLogger("mvactors")

Redis = redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster
T = TypeVar("T")

UNREACHABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
               redis.exceptions.ClusterDownError, redis.exceptions.BusyLoadingError,
               redis.exceptions.TryAgainError, redis.exceptions.MaxConnectionsError, OSError)

BACKOFF_MIN, BACKOFF_MAX = 0.05, 1.0  # seconds between attempts while Redis does not answer
_LOG_EVERY = 20  # a retry loop logs its 1st failure, then every 20th (about one line per 20 s)


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


async def guarded(url: str, action: Callable[[], Awaitable[T]]) -> T:
    """Run one Redis request; connection trouble becomes RedisUnreachable naming the URL."""
    try:
        return await action()
    except redis.exceptions.RedisClusterException as exc:
        raise RedisUnreachable(f"Redis Cluster at {url} is unreachable: {exc}") from exc
    except UNREACHABLE as exc:
        raise RedisUnreachable(f"Redis at {url} is unreachable: {exc}") from exc


class RedisLink:
    """The two connection pools to the Redis at ``url`` and how requests to it are retried.

    ``blocking_timeout`` is the socket timeout of the pool for blocking reads (their BLOCK plus
    a margin); ``who`` names the process in log lines.
    """

    def __init__(self, url: str, *, blocking_timeout: float, blocking_connections: int = 100,
                 who: str = "client") -> None:
        self.url = url
        self.who = who
        self.redis: Redis = open_redis(url)
        self.blocking: Redis = open_redis(url, socket_timeout=blocking_timeout,
                                          max_connections=blocking_connections)
        # retries=-1: a worker waits out an outage instead of failing its actors.
        self._retry = Retry(EqualJitterBackoff(cap=BACKOFF_MAX, base=BACKOFF_MIN), retries=-1,
                            supported_errors=UNREACHABLE)

    async def aclose(self) -> None:
        """Close both pools (a dead connection has nothing to save)."""
        for client in (self.redis, self.blocking):
            try:
                await client.aclose()
            except Exception:  # closing a dead connection: nothing to save
                pass

    async def guarded(self, action: Callable[[], Awaitable[T]]) -> T:
        """One attempt; connection trouble becomes RedisUnreachable naming the URL."""
        return await guarded(self.url, action)

    async def load_functions(self) -> None:
        """Load (or check) the functions library, on every primary of a cluster."""
        await self.guarded(lambda: load_functions(self.redis))

    async def fcall(self, name: str, args: list[Any]) -> Any:
        """One attempt at ``FCALL name`` with ``args`` (numkeys, keys..., arguments...)."""
        return await self.guarded(lambda: self.redis.fcall(name, *args))  # type: ignore[misc]

    async def retrying(self, what: str, action: Callable[[], Awaitable[T]]) -> T:
        """Run ``action`` until Redis answers, backing off and logging while it does not.

        Every write sent this way must be safe to repeat (the functions recognise a repeat).
        """
        async def note(exc: Exception, failures: int) -> None:
            if failures == 1 or failures % _LOG_EVERY == 0:
                log.warning("%s: Redis unreachable while %s (%s); retrying", self.who, what, exc)

        return await self._retry.call_with_retry(action, note, with_failure_count=True)

    async def pipeline(self, what: str, build: Callable[[Any], None]) -> list[Any]:
        """Build and run a pipeline until Redis answers; a failed command's reply is its exception.

        (redis-py empties a pipeline when it fails, so each attempt builds it again.)"""
        async def attempt() -> list[Any]:
            pipe = self.redis.pipeline(transaction=False)
            build(pipe)
            return await pipe.execute(raise_on_error=False)  # type: ignore[no-any-return]
        return await self.retrying(what, attempt)

    async def pipeline_once(self, build: Callable[[Any], None]) -> list[Any]:
        """Build and run a pipeline once (UNREACHABLE errors propagate: the caller's loop tries again)."""
        pipe = self.redis.pipeline(transaction=False)
        build(pipe)
        return await pipe.execute(raise_on_error=False)  # type: ignore[no-any-return]

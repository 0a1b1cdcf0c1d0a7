"""``RedisLink``: the connections of a client or worker to one Redis (or Redis Cluster).

One owner for: the URL forms, the two connection pools (a blocking read gets its own, with
a socket timeout longer than its BLOCK: redis-py#2807), cluster routing of ``FUNCTION
LOAD``, what counts as "unreachable", and the one retry policy (redis-py's ``Retry`` with
equal-jitter backoff from 50 ms to 1 s, for as long as it takes).

A failover is one more kind of "unreachable": connection resets, ``CLUSTERDOWN`` and
``TRYAGAIN`` while the replica is elected, then ``MOVED`` (redis-py's cluster client follows it
and refreshes its slot map; the per-node pipelines of :meth:`RedisLink.acked` turn it into
``TRYAGAIN`` after refreshing).  Every write is safe to repeat, so the one policy retries them all.

A full Redis (``OOM``, ``noeviction`` at ``maxmemory``) is not unreachable: a client gets
:class:`RedisOutOfMemory` at once (no retry storm; Redis refused the function before it wrote
anything), while a worker (``retry_oom=True``) waits it out with the same backoff, keeping its
actors: its leases renew under OOM (``mva_renew`` is ``allow-oom``), its commits wait.

``replica_acks`` (see :meth:`RedisLink.acked`): a pipeline runs on one connection to the master
serving the partition, followed by ``mva_sync`` (a write that always replicates) and ``WAIT n``.
WAIT counts the replicas holding everything that connection wrote, so all the master held for
the slot before the sync; fewer than ``n`` within :data:`REPLICA_WAIT_MS` is
:class:`NotReplicated`, a failed write, never an acknowledgement.
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
from .errors import FunctionsMismatch, NotReplicated, RedisOutOfMemory, RedisUnreachable
from .keys import sync_key

log = logging.getLogger("mvactors")

Redis = redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster
T = TypeVar("T")

UNREACHABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
               redis.exceptions.ClusterDownError, redis.exceptions.BusyLoadingError,
               redis.exceptions.TryAgainError, redis.exceptions.MaxConnectionsError, OSError)

OUT_OF_MEMORY = redis.exceptions.OutOfMemoryError
# A WAIT gives the replicas this long: on loopback they answer in well under 1 ms; 1 s rides out
# a replica's fsync stall or a short GC-like pause, and bounds how long a send waits on a dead one.
REPLICA_WAIT_MS = 1000
_OOM_FIX = ("free memory (delete data, raise maxmemory: `CONFIG SET maxmemory <bytes>`), then send again "
            "with the same message_id; nothing of the refused request was written")

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
    except OUT_OF_MEMORY as exc:
        raise RedisOutOfMemory(f"Redis at {url} is full and refused the write (OOM {exc}): {_OOM_FIX}") from exc
    except redis.exceptions.RedisClusterException as exc:
        raise RedisUnreachable(f"Redis Cluster at {url} is unreachable: {exc}") from exc
    except UNREACHABLE as exc:
        raise RedisUnreachable(f"Redis at {url} is unreachable: {exc}") from exc


class RedisLink:
    """The two connection pools to the Redis at ``url`` and how requests to it are retried.

    ``blocking_timeout`` is the socket timeout of the pool for blocking reads (their BLOCK plus
    a margin); ``who`` names the process in log lines.  ``retry_oom``: :meth:`retrying` also waits
    out a full Redis (workers; a client fails at once instead).  ``replica_acks``: how many replicas
    :meth:`acked` waits for (0: no WAIT).
    """

    def __init__(self, url: str, *, blocking_timeout: float, blocking_connections: int = 100,
                 who: str = "client", retry_oom: bool = False, replica_acks: int = 0) -> None:
        self.url = url
        self.who = who
        self.replica_acks = replica_acks
        self.redis: Redis = open_redis(url)
        self.blocking: Redis = open_redis(url, socket_timeout=blocking_timeout,
                                          max_connections=blocking_connections)
        self._nodes: dict[str, redis.asyncio.Redis] = {}  # a cluster master's own pool, for acked()
        # retries=-1: a worker waits out an outage instead of failing its actors.
        self.retried = UNREACHABLE + (NotReplicated,) + ((OUT_OF_MEMORY,) if retry_oom else ())
        self._retry = Retry(EqualJitterBackoff(cap=BACKOFF_MAX, base=BACKOFF_MIN), retries=-1,
                            supported_errors=self.retried)

    async def aclose(self) -> None:
        """Close both pools (a dead connection has nothing to save)."""
        for client in (self.redis, self.blocking, *self._nodes.values()):
            try:
                await client.aclose()
            except Exception:  # closing a dead connection: nothing to save
                pass

    async def guarded(self, action: Callable[[], Awaitable[T]]) -> T:
        """One attempt; connection trouble becomes RedisUnreachable naming the URL."""
        return await guarded(self.url, action)

    async def load_functions(self) -> None:
        """Load (or check) the functions library, on every primary of a cluster.

        With ``retry_oom`` a full Redis (FUNCTION LOAD is refused under OOM) is waited out, logged."""
        if OUT_OF_MEMORY not in self.retried:
            await self.guarded(lambda: load_functions(self.redis))
            return

        async def note(exc: Exception, failures: int) -> None:
            if failures == 1 or failures % _LOG_EVERY == 0:
                log.warning("%s: %s; waiting for memory before starting", self.who, exc)

        full = Retry(EqualJitterBackoff(cap=BACKOFF_MAX, base=BACKOFF_MIN), retries=-1,
                     supported_errors=(RedisOutOfMemory,))
        await full.call_with_retry(lambda: self.guarded(lambda: load_functions(self.redis)), note,
                                   with_failure_count=True)

    async def fcall(self, name: str, args: list[Any]) -> Any:
        """One attempt at ``FCALL name`` with ``args`` (numkeys, keys..., arguments...)."""
        return await self.guarded(lambda: self.redis.fcall(name, *args))  # type: ignore[misc]

    async def retrying(self, what: str, action: Callable[[], Awaitable[T]]) -> T:
        """Run ``action`` until Redis answers, backing off and logging while it does not.

        Every write sent this way must be safe to repeat (the functions recognise a repeat).
        """
        async def note(exc: Exception, failures: int) -> None:
            if failures == 1 or failures % _LOG_EVERY == 0:
                why = ("full (OOM)" if isinstance(exc, OUT_OF_MEMORY) else
                       "short of replica acks" if isinstance(exc, NotReplicated) else "unreachable")
                log.warning("%s: Redis %s while %s (%s); retrying", self.who, why, what, exc)

        return await self._retry.call_with_retry(action, note, with_failure_count=True)

    async def pipeline(self, what: str, build: Callable[[Any], object]) -> list[Any]:
        """Build and run a pipeline until Redis answers; a failed command's reply is its exception.

        (redis-py empties a pipeline when it fails, so each attempt builds it again.)"""
        async def attempt() -> list[Any]:
            pipe = self.redis.pipeline(transaction=False)
            build(pipe)
            return await pipe.execute(raise_on_error=False)  # type: ignore[no-any-return]
        return await self.retrying(what, attempt)

    async def pipeline_once(self, build: Callable[[Any], object]) -> list[Any]:
        """Build and run a pipeline once (UNREACHABLE errors propagate: the caller's loop tries again)."""
        pipe = self.redis.pipeline(transaction=False)
        build(pipe)
        return await pipe.execute(raise_on_error=False)  # type: ignore[no-any-return]

    # ---- replica_acks ----

    async def _master_of(self, tag: str) -> Redis:
        """The connection pool of the master serving partition ``tag`` (the one client for a single Redis)."""
        cluster = self.redis
        if not isinstance(cluster, redis.asyncio.cluster.RedisCluster):
            return cluster
        await cluster.initialize()
        try:
            node = cluster.get_node_from_key(sync_key(tag))
        except redis.exceptions.SlotNotCoveredError as exc:  # mid-failover: nobody serves it yet
            await cluster.nodes_manager.initialize()
            raise redis.exceptions.TryAgainError(str(exc)) from exc
        assert node is not None
        client = self._nodes.get(node.name)
        if client is None:
            plain = open_redis(f"redis://{node.host}:{node.port}/0")
            assert isinstance(plain, redis.asyncio.Redis)
            client = self._nodes[node.name] = plain
        return client

    async def by_master(self, tags: list[str]) -> list[list[str]]:
        """``tags`` grouped by the master serving them now (one group on a single Redis)."""
        cluster = self.redis
        if not isinstance(cluster, redis.asyncio.cluster.RedisCluster):
            return [tags] if tags else []
        await cluster.initialize()
        groups: dict[str, list[str]] = {}
        for tag in tags:
            try:
                node = cluster.get_node_from_key(sync_key(tag))
            except redis.exceptions.SlotNotCoveredError:
                node = None
            groups.setdefault(node.name if node is not None else "", []).append(tag)
        return list(groups.values())

    async def _reread_slots(self) -> None:
        if isinstance(self.redis, redis.asyncio.cluster.RedisCluster):
            try:
                await self.redis.nodes_manager.initialize()
            except Exception as exc:  # the cluster is mid-failover: the next attempt reads it again
                log.debug("%s: reading the slot map failed: %s", self.who, exc)

    async def synced(self, tag: str) -> None:
        """Return once ``replica_acks`` replicas of ``tag``'s master hold every write it took so far,
        on any connection (``mva_sync`` + WAIT, retried while they lag: the offset WAIT waits for
        is the master's, so it covers earlier writes made elsewhere)."""
        await self.retrying("waiting for the replicas", lambda: self.acked(tag, lambda pipe: None))

    async def acked(self, tag: str, build: Callable[[Any], object]) -> list[Any]:
        """One attempt at ``build``'s commands (all of partition ``tag``) on one connection to its master,
        then ``mva_sync`` and ``WAIT replica_acks``; their replies (a failed command's is its exception).

        Raises :class:`NotReplicated` when fewer replicas confirmed within :data:`REPLICA_WAIT_MS`
        (the commands ran on the master: repeat them, they are safe to repeat), and TryAgainError
        after a MOVED/ASK (the slot moved: the slot map is read again first)."""
        client = await self._master_of(tag)
        pipe = client.pipeline(transaction=False)
        build(pipe)
        pipe.fcall("mva_sync", 1, sync_key(tag))
        pipe.execute_command("WAIT", self.replica_acks, REPLICA_WAIT_MS)
        try:
            results: list[Any] = await pipe.execute(raise_on_error=False)
        except UNREACHABLE:
            await self._reread_slots()  # a dead master: its replica may be serving the slot by now
            raise
        if any(isinstance(r, redis.exceptions.AskError) for r in results):  # (MovedError is an AskError)
            await self._reread_slots()
            raise redis.exceptions.TryAgainError(f"partition {tag} moved to another master")
        synced, acked = results[-2], results[-1]
        for answer in (synced, acked):
            if isinstance(answer, Exception):
                raise answer
        if int(acked) < self.replica_acks:
            raise NotReplicated(f"only {int(acked)} of {self.replica_acks} replicas of Redis {self.url} confirmed "
                                f"the write within {REPLICA_WAIT_MS} ms (replica_acks={self.replica_acks}): a "
                                "failover could lose it, so it is not acknowledged; check the replicas' links "
                                "(INFO replication), or lower replica_acks")
        return results[:-2]

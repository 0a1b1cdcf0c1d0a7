"""What a Redis deployment must promise before actors are stored in it, checked at connect.

Three settings decide whether "nothing acknowledged is lost" can hold at all:

* ``maxmemory-policy``: anything but ``noeviction`` lets Redis delete keys under memory
  pressure, silently: ``allkeys-*`` any key, ``volatile-*`` any key with a TTL (leases,
  replies).  An evicted record loses an actor; an evicted dedupe set applies a message
  twice; an evicted lease breaks fencing.  That is refused, on every master of a Cluster.
* ``appendonly`` / ``appendfsync``: they decide what a redis-server crash loses.  Anything
  weaker than ``appendonly yes`` with ``appendfsync always`` is the user's choice, so it is
  allowed, with a WARNING that states the cost.

Managed services often rename or disable ``CONFIG``.  Then nothing can be verified: a
WARNING says so and the caller goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from .errors import EvictionPolicyRefused

_log = logging.getLogger("mvactors.cluster")

# What a redis-server crash loses under each persistence setting (the README's own words).
AOF_OFF_LOSES = "everything written since the last RDB save (appendonly is off)"
EVERYSEC_LOSES = "up to about 2 s of acknowledged sends and turns (appendfsync everysec)"
NO_FSYNC_LOSES = "whatever the OS had not yet flushed to disk, often 30 s of acknowledged sends and turns"


@dataclass(frozen=True)
class NodeSettings:
    """One master's settings that matter for durability; ``None`` where ``CONFIG GET`` was refused."""

    node: str
    maxmemory_policy: str | None
    appendonly: str | None
    appendfsync: str | None

    @property
    def crash_loses(self) -> str | None:
        """What a crash of this redis-server loses, or None when it loses nothing acknowledged."""
        if self.appendonly is None:
            return None  # unknown: the caller already warned that nothing could be verified
        if self.appendonly != "yes":
            return AOF_OFF_LOSES
        if self.appendfsync == "everysec":
            return EVERYSEC_LOSES
        if self.appendfsync not in (None, "always"):
            return NO_FSYNC_LOSES
        return None


async def _config_get(call: Callable[[str], Awaitable[dict[Any, Any]]], node: str) -> NodeSettings:
    try:
        found = await call("maxmemory-policy")
        persistence = await call("append*")
    except ResponseError as exc:  # CONFIG renamed, disabled or denied by an ACL
        _log.warning("could not verify Redis's eviction and persistence settings on %s (CONFIG GET "
                     "answered %r); make sure maxmemory-policy is noeviction, or actors can be lost", node, str(exc))
        return NodeSettings(node, None, None, None)

    def value(settings: dict[Any, Any], name: str) -> str | None:
        raw = settings.get(name, settings.get(name.encode()))
        return raw.decode() if isinstance(raw, bytes) else raw

    return NodeSettings(node, value(found, "maxmemory-policy"), value(persistence, "appendonly"),
                        value(persistence, "appendfsync"))


async def read_settings(redis: Any) -> list[NodeSettings]:
    """The durability settings of every master (one entry for a single server)."""
    if isinstance(redis, RedisCluster):
        cluster = redis
        await cluster.initialize()  # a no-op once the client knows the slots; before that it knows no nodes
        found = []
        for node in cluster.get_primaries():
            async def on_node(pattern: str, node: Any = node) -> dict[Any, Any]:
                return await cluster.config_get(pattern, target_nodes=node)
            found.append(await _config_get(on_node, node.name))
        return found
    return [await _config_get(redis.config_get, "redis")]


async def check_deployment(redis: Any, *, warn_persistence: bool) -> list[NodeSettings]:
    """Refuse an evicting Redis; with ``warn_persistence``, log what a crash of each master would lose.

    Raises :class:`EvictionPolicyRefused` naming the first master whose policy may evict.
    Workers warn about persistence (they commit turns); clients only need the eviction check.
    """
    settings = await read_settings(redis)
    for node in settings:
        if node.maxmemory_policy is not None and node.maxmemory_policy != "noeviction":
            raise EvictionPolicyRefused(node.node, node.maxmemory_policy)
    if warn_persistence:
        for node in settings:
            loses = node.crash_loses
            if loses is not None:
                _log.warning("Redis %s is not set to appendonly yes + appendfsync always: a crash of that "
                             "redis-server loses %s", node.node, loses)
    return settings

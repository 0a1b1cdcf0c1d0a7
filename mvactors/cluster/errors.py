"""Errors of the Redis-backed cluster (all ClusterError, a MicroviumError)."""

from __future__ import annotations

from ..errors import ClusterError


class RedisUnreachable(ClusterError):
    """Redis did not answer (refused, timed out, cluster down); the request may not have been applied."""

    default_code = "MVA_REDIS_UNREACHABLE"


class ActorNotFound(ClusterError, KeyError):
    """No actor with this ID is stored in Redis."""

    default_code = "MVA_ACTOR_NOT_FOUND"

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ActorExistsInRedis(ClusterError):
    """``spawn`` was given an ``actor_id`` that is already stored."""

    default_code = "MVA_ACTOR_EXISTS"


class ActorFailedInRedis(ClusterError):
    """The actor failed (corrupt record, imports no worker has, fatal engine error); ``reason`` says why."""

    default_code = "MVA_ACTOR_FAILED"

    def __init__(self, actor_id: str, reason: str) -> None:
        super().__init__(f"actor {actor_id!r} failed: {reason}")
        self.actor_id = actor_id
        self.reason = reason


class FunctionsMismatch(ClusterError):
    """Redis holds a newer version of the mvactors functions than this process knows."""

    default_code = "MVA_FUNCTIONS_VERSION"


class EvictionPolicyRefused(ClusterError):
    """Redis may evict keys (``maxmemory-policy`` is not ``noeviction``), which would lose actors."""

    default_code = "MVA_EVICTION_POLICY"

    def __init__(self, node: str, policy: str) -> None:
        super().__init__(
            f"Redis {node} has maxmemory-policy {policy!r}: under memory pressure it would silently delete "
            "actor records, mailboxes, leases and dedupe sets, losing actors and applying messages twice. "
            "Set it to noeviction: `CONFIG SET maxmemory-policy noeviction` (and `maxmemory-policy noeviction` "
            "in redis.conf so it survives a restart)")
        self.node = node
        self.policy = policy

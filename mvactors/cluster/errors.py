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


class RedisOutOfMemory(ClusterError):
    """Redis refused a write with ``OOM`` (``noeviction`` at ``maxmemory``); nothing of it was written.

    Redis checks memory before a function runs, so a refused send, call or spawn left no half-written
    message: sending again (with the same ``message_id``) once memory is freed is safe.
    """

    default_code = "MVA_REDIS_OOM"


class NotReplicated(RedisUnreachable):
    """A write reached the master but fewer replicas than ``replica_acks`` confirmed it in time.

    It is not acknowledged: a failover now could lose it.  Send again with the same ``message_id``
    (``message_id`` is on the error): a repeat is recognised and waits for the replicas again.
    """

    default_code = "MVA_NOT_REPLICATED"

    def __init__(self, message: str, message_id: str | None = None) -> None:
        super().__init__(message)
        self.message_id = message_id

"""Helpers for testing mvactors and the guest scripts built on it."""

from ..vm._native import NativeVM, native_available
from .redis import RedisCluster, RedisServer, RedisUnavailable, ReplicatedRedis, redis_cluster, redis_server

__all__ = ["NativeVM", "RedisCluster", "RedisServer", "RedisUnavailable", "ReplicatedRedis", "native_available",
           "redis_cluster", "redis_server"]

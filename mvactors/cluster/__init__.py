"""Floor 3: durable actors on Redis, run by worker processes on any number of machines.

Imports only the public names of the floors below (vm, actors, store) and the ground.
Runs on asyncio (redis-py's asyncio client).
"""

from .client import Client, connect
from .errors import (
    ActorExistsInRedis,
    ActorFailedInRedis,
    ActorNotFound,
    EvictionPolicyRefused,
    NotReplicated,
    RedisOutOfMemory,
    RedisUnreachable,
)
from .worker import Worker

__all__ = ["ActorExistsInRedis", "ActorFailedInRedis", "ActorNotFound", "Client", "EvictionPolicyRefused",
           "NotReplicated", "RedisOutOfMemory", "RedisUnreachable", "Worker", "connect"]

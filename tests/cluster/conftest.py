"""Fixtures for the cluster suites: real redis-server processes (asyncio only: redis-py's client).

``MVACTORS_TEST_REPLICA_ACKS=1`` runs the suites against a master with one replica, with worker
processes (``--replica-acks 1``) and feeders (``connect(replica_acks=1)``) waiting for it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mvactors.testing import RedisServer, ReplicatedRedis

from .processes import REPLICA_ACKS


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def redis_node() -> Iterator[RedisServer]:
    if REPLICA_ACKS:
        with ReplicatedRedis(REPLICA_ACKS) as replicated:
            yield replicated.master
        return
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_node: RedisServer) -> str:
    return redis_node.url

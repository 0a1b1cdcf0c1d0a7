"""Fixtures for the cluster suites: real redis-server processes (asyncio only: redis-py's client)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mvactors.testing import RedisServer


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def redis_node() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_node: RedisServer) -> str:
    return redis_node.url

"""The dashboard suites run on asyncio only: uvicorn and redis-py are asyncio libraries."""

from __future__ import annotations

import pytest

pytest.importorskip("starlette", reason='the dashboard needs pip install "mvactors[dashboard]"')


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"

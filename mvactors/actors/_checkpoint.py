"""The runtime's cancellation point, resolved once per event loop instead of once per call."""

from __future__ import annotations

import asyncio
import types
from collections.abc import Awaitable, Callable, Generator

import anyio.lowlevel

Checkpoint = Callable[[], Awaitable[None]]


@types.coroutine
def _asyncio_checkpoint() -> Generator[None, None, None]:
    # A bare yield is one turn of the asyncio loop, and the point where a pending
    # task.cancel() (how anyio's cancel scopes cancel on asyncio) is raised: what
    # asyncio.sleep(0), and so anyio's asyncio checkpoint, comes down to.
    yield


def checkpoint_for_running_loop() -> Checkpoint:
    """``anyio.lowlevel.checkpoint``'s equivalent for the loop running now.

    anyio looks the backend up on every checkpoint (sniffio, then the current task): about
    2-3 µs here, 20% of an inline ``Actor.call``.  A runtime lives on one loop, so it asks once.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # not asyncio (trio): anyio's own path
        return anyio.lowlevel.checkpoint
    return _asyncio_checkpoint

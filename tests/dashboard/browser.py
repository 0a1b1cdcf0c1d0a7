"""Debian's chromium under Playwright, and dashboards served on free loopback ports for it to open.

Playwright is launched with ``executable_path`` pointing at the system browser: it cannot (and
must not) download browser builds here.  Each launch gets a fresh profile directory from
Playwright, and the flags keep the browser off the network: no first-run, sync, component
updates or background requests, only the dashboard on 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread

import mvactors
from mvactors.dashboard import Server

ROOT = Path(__file__).resolve().parents[2]
FLEET = ROOT / "examples" / "fleet"

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",  # as root the sandbox cannot start; the browser only opens our own loopback pages
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    """The system chromium (``$MVACTORS_CHROMIUM`` overrides), or None."""
    return os.environ.get("MVACTORS_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def screenshot_dir() -> Path:
    """Where the browser tests leave their screenshots (``$MVACTORS_SCREENSHOTS``, else a temp dir)."""
    given = os.environ.get("MVACTORS_SCREENSHOTS")
    path = Path(given) if given else Path(tempfile.gettempdir()) / "mvactors-dashboard-screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def served(app: Any, portal: anyio.from_thread.BlockingPortal) -> Iterator[str]:
    """``app`` served by uvicorn in ``portal``'s event loop on a free loopback port; yields its URL."""
    server = Server(app, port=0)
    future, url = portal.start_task(server.serve)
    try:
        yield url.rstrip("/")
    finally:
        portal.call(_stop, server)
        future.result(timeout=10)


async def _stop(server: Server) -> None:
    server.stop()


@contextmanager
def fleet_runtime(devices: int, period_s: int) -> Iterator[tuple[anyio.from_thread.BlockingPortal, mvactors.Runtime]]:
    """The fleet example's thermostats on a wall-clock Runtime in a background event loop.

    Uses examples/fleet/run.py's own ``spawn_devices``: what ``run.py --dashboard`` shows.
    """
    sys.path.insert(0, str(FLEET))
    try:
        import run as fleet_run  # examples/fleet/run.py
    finally:
        sys.path.remove(str(FLEET))
    snapshot = mvactors.compile(FLEET / "thermostat.js")
    with anyio.from_thread.start_blocking_portal("asyncio") as portal, \
            portal.wrap_async_context_manager(mvactors.Runtime()) as rt:
        rooms: list[Any] = []
        setpoints: list[float] = []
        # Samples for ten minutes at most: long enough for any test, then the devices go quiet.
        portal.call(fleet_run.spawn_devices, rt, snapshot, devices, 1, period_s, 600 // period_s, rooms, setpoints)
        yield portal, rt

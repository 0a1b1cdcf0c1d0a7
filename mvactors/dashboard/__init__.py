"""A web dashboard for actors and workers: ``create_app`` (an ASGI app) and ``serve`` (uvicorn in this loop).

Needs ``pip install "mvactors[dashboard]"`` (Starlette, uvicorn, Jinja2).  Over Redis::

    mvactors dashboard --redis redis://127.0.0.1:6379/0

Over an in-process Runtime, serve it in the runtime's own event loop (asyncio)::

    async with mvactors.Runtime() as rt, anyio.create_task_group() as tg:
        server = mvactors.dashboard.Server(mvactors.dashboard.create_app(runtime=rt), port=8000)
        url = await tg.start(server.serve)
        ...
        server.stop()
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from .security import is_loopback
from .sources import ActorPage, DataSource, Overview, RedisSource, RuntimeSource, Unavailable

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from ..actors import Runtime


def create_app(redis_url: str | None = None, runtime: Runtime | None = None, token: str | None = None,
               read_only: bool = False, *, source: DataSource | None = None) -> ASGIApp:
    """The dashboard as an ASGI app, for the actors in Redis at ``redis_url`` or in ``runtime``.

    ``token``: every request must carry it (``Authorization: Bearer``, or the login form's cookie);
    without one, only loopback Host names are answered.  ``read_only`` hides the action buttons
    and refuses their POSTs with 403.  ``source`` serves any :class:`DataSource` instead.
    """
    from .app import build

    given = sum(x is not None for x in (redis_url, runtime, source))
    if given != 1:
        raise ValueError("create_app needs exactly one of redis_url=, runtime= (or source=)")
    if source is None:
        source = RuntimeSource(runtime) if runtime is not None else RedisSource(str(redis_url))
    return build(source, token, read_only)


class Server:
    """uvicorn serving an app in the current event loop (asyncio), until :meth:`stop`.

    ``port=0`` takes a free port; ``serve`` reports the URL to ``task_status`` once it listens.
    ``signals=False`` (embedded use) leaves Ctrl-C to the program that embeds it.
    """

    def __init__(self, app: ASGIApp, host: str = "127.0.0.1", port: int = 8000, *, signals: bool = False) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.signals = signals
        self.url: str | None = None
        self._server: Any = None

    async def serve(self, *, task_status: anyio.abc.TaskStatus[str] = anyio.TASK_STATUS_IGNORED) -> None:
        import uvicorn

        # Bound here, so a port in use raises OSError to the caller (uvicorn itself would exit the process).
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        port = sock.getsockname()[1]
        shown = f"[{self.host}]" if family == socket.AF_INET6 else self.host
        self.url = f"http://{shown}:{port}/"
        config = uvicorn.Config(self.app, log_level="warning", lifespan="on", access_log=False)
        server = uvicorn.Server(config) if self.signals else _embedded_server(config)
        self._server = server
        finished = anyio.Event()

        async def run() -> None:
            try:
                await server.serve([sock])
            finally:
                finished.set()

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(run)
                while not server.started and not finished.is_set():
                    await anyio.sleep(0.01)
                if not server.started:
                    raise RuntimeError("the dashboard did not start (see the log above)")
                task_status.started(self.url)
        finally:
            sock.close()

    def stop(self) -> None:
        """Ask the server to finish (open connections are closed); :meth:`serve` then returns."""
        if self._server is not None:
            self._server.should_exit = True


def _embedded_server(config: Any) -> Any:
    """A uvicorn Server that leaves SIGINT/SIGTERM to the program embedding it (uvicorn takes them otherwise)."""
    import uvicorn

    class Embedded(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return Embedded(config)


__all__ = ["ActorPage", "DataSource", "Overview", "RedisSource", "RuntimeSource", "Server", "Unavailable",
           "create_app", "is_loopback"]

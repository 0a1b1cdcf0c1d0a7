"""``mvactors dashboard``: serve the web dashboard for the actors in Redis.

    mvactors dashboard --redis redis://127.0.0.1:6379/0
    mvactors dashboard --host 0.0.0.0 --token "$(cat token)"     # other hosts need a token
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any

from .security import is_loopback

EXIT_USAGE = 2


def add_parser(commands: Any) -> None:
    """Register ``dashboard`` on the ``mvactors`` command's subparsers."""
    p = commands.add_parser("dashboard", help="serve a web dashboard of the actors and workers in Redis",
                            description="Serve a web dashboard of the actors and workers in Redis "
                                        '(needs pip install "mvactors[dashboard]").')
    p.add_argument("--redis", metavar="URL", default=os.environ.get("MVACTORS_REDIS"),
                   help="the Redis the actors are in (default: $MVACTORS_REDIS)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; any other needs --token)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 takes a free one)")
    p.add_argument("--token", default=os.environ.get("MVACTORS_DASHBOARD_TOKEN"),
                   help="every request must carry it (default: $MVACTORS_DASHBOARD_TOKEN, which keeps it "
                        "out of the process list)")
    p.add_argument("--read-only", action="store_true", help="no action buttons; their POSTs answer 403")
    p.set_defaults(run=run)


def _refuse(message: str) -> int:
    print(f"mvactors dashboard: {message}", file=sys.stderr)
    return EXIT_USAGE


def run(args: argparse.Namespace) -> int:
    """Check the options, then serve until Ctrl-C or SIGTERM."""
    if not args.redis:
        return _refuse("which Redis? give --redis URL or set $MVACTORS_REDIS")
    if not is_loopback(args.host) and not args.token:
        return _refuse(f"refusing to serve on {args.host} without --token: the dashboard can pause and delete "
                       "actors, so anyone who can reach a non-loopback address would control them. "
                       "Give --token TOKEN (or $MVACTORS_DASHBOARD_TOKEN), or keep --host 127.0.0.1")
    if args.token is not None and not args.token:
        return _refuse("--token must not be empty")
    if not 0 <= args.port < 65536:
        return _refuse(f"--port must be 0..65535, not {args.port}")
    try:
        import jinja2  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ModuleNotFoundError as exc:
        return _refuse(f"the dashboard needs {exc.name}: pip install \"mvactors[dashboard]\"")
    try:
        import redis  # noqa: F401
    except ModuleNotFoundError:
        return _refuse('the dashboard reads Redis with redis-py: pip install "mvactors[dashboard,redis]"')
    import anyio

    try:
        return anyio.run(_serve, args, backend="asyncio")
    except KeyboardInterrupt:
        return 0


async def _serve(args: argparse.Namespace) -> int:
    import anyio

    from ..cluster.client import Client
    from . import Server, create_app
    from .sources import RedisSource

    client = Client(args.redis)
    try:
        await client.__aenter__()  # fail now, saying why, rather than on the first page
    except Exception as exc:
        print(f"mvactors dashboard: cannot reach Redis at {args.redis}: {exc}", file=sys.stderr)
        return 1
    try:
        app = create_app(source=RedisSource(args.redis, client), token=args.token, read_only=args.read_only)
        server = Server(app, args.host, args.port)
        async with anyio.create_task_group() as tg:
            try:
                url = await tg.start(server.serve)
            except OSError as exc:
                print(f"mvactors dashboard: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
                return 1
            print(f"mvactors dashboard: open {url}" + (" (log in with the token)" if args.token else ""), flush=True)
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    server.stop()
                    break
    finally:
        await client.aclose()
    return 0


__all__ = ["add_parser", "run"]

"""``mvactors worker``: run a Worker until SIGTERM/SIGINT, then hand every actor over and exit 0."""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
import signal
import sys
from collections.abc import Mapping
from typing import Any

import anyio

from ..vm import load_engine
from .errors import EvictionPolicyRefused
from .worker import Worker


class BadImports(Exception):
    """``--imports`` does not name an import-table mapping."""


def load_imports(spec: str) -> Mapping[str, Mapping[int, Any]]:
    """``package.module:ATTR`` -> the mapping of import-table names to import maps it names."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise BadImports(f"--imports must look like package.module:ATTR, not {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise BadImports(f"--imports {spec}: cannot import module {module_name!r}: "
                         f"{type(exc).__name__}: {exc}") from None
    try:
        tables = getattr(module, attr)
    except AttributeError:
        raise BadImports(f"--imports {spec}: module {module_name!r} has no attribute {attr!r}") from None
    if not isinstance(tables, Mapping) or not all(isinstance(k, str) and isinstance(v, Mapping)
                                                  for k, v in tables.items()):
        raise BadImports(f"--imports {spec}: {attr} must be a dict of import-table names to import maps "
                         f"({{'name': {{1: function}}}}), not {type(tables).__name__}")
    return tables


def add_parser(commands: Any) -> None:
    """Register the ``worker`` subcommand on the ``mvactors`` argument parser."""
    p = commands.add_parser("worker", help="run actors stored in Redis until SIGTERM/SIGINT")
    p.add_argument("--redis", required=True, metavar="URL", help="redis://host:port/db or redis+cluster://host:port")
    p.add_argument("--imports", required=True, metavar="MODULE:ATTR",
                   help="dict of import-table names to import maps, e.g. myapp.hosts:IMPORTS")
    p.add_argument("--worker-id", help="this worker's name (default: host-pid-random)")
    p.add_argument("--max-actors", type=int, help="hold at most this many actors at once")
    p.add_argument("--lease-ms", type=int, default=2000, help="lease TTL in ms (default 2000)")
    p.add_argument("--idle-release", type=float, default=10.0, metavar="SECONDS",
                   help="hand an actor back to Redis after this long without work (default 10)")
    p.add_argument("--checkpoint-every", type=int, default=1, help="commit every N turns (default 1)")
    p.add_argument("--replica-acks", type=int, default=0, metavar="N",
                   help="a commit counts, and its replies are readable, once N replicas hold it (default 0)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        tables = load_imports(args.imports)
    except BadImports as exc:
        print(f"mvactors worker: {exc}", file=sys.stderr)
        return 2
    try:
        load_engine()
    except RuntimeError as exc:  # a missing or stale engine build, with the command that fixes it
        print(f"mvactors worker: {exc}", file=sys.stderr)
        return 2
    if not logging.getLogger("mvactors").handlers and not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    worker = Worker(args.redis, tables, worker_id=args.worker_id, max_actors=args.max_actors,
                    lease_ms=args.lease_ms, checkpoint_every=args.checkpoint_every, replica_acks=args.replica_acks,
                    idle_release_s=args.idle_release)
    try:
        anyio.run(_serve, worker)
    except EvictionPolicyRefused as exc:  # a deployment that would lose actors: refuse to serve it
        print(f"mvactors worker: {exc}", file=sys.stderr)
        return 2
    return 0


# The cyclic collector's default first threshold (700 allocations) runs a young collection every few
# turns of a busy worker; its turns make few reference cycles, so collect far less often.
GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc() -> None:
    """Move what startup allocated (modules, the engine, import tables) out of the collector's reach and
    raise its thresholds: a worker process allocates much per turn and makes little cyclic garbage."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def _serve(worker: Worker) -> None:
    async with worker:
        tune_gc()  # after startup: the worker's long-lived objects exist now
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with anyio.create_task_group() as tg:
                async def stop_on_signal() -> None:
                    async for signum in signals:
                        logging.getLogger("mvactors").info("worker %s: %s, handing over",
                                                           worker.worker_id, signal.Signals(signum).name)
                        await worker.close(graceful=True)
                        return

                tg.start_soon(stop_on_signal)
                await worker.wait_closed()
                tg.cancel_scope.cancel()

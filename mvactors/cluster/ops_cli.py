"""``mvactors actors ...`` and ``mvactors workers``: what operators type to find, inspect and repair actors.

Tables for people (rich, when installed), one JSON object per line with ``--json``.  Every error
exits with status 2 and says what to type instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

from ..errors import ClusterError, UpgradeFailed
from .client import Client
from .errors import ActorNotFound
from .inventory import STATES

_ENV = "MVACTORS_REDIS"


class OpsError(Exception):
    """A request the command cannot carry out; the message says what to type."""


def add_parsers(commands: Any) -> None:
    """Register ``actors`` and ``workers`` on the ``mvactors`` argument parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--redis", metavar="URL", default=None,
                        help=f"redis://host:port/db or redis+cluster://host:port (default: ${_ENV})")
    common.add_argument("--json", action="store_true", help="one JSON object per line")

    p = commands.add_parser("workers", parents=[common], help="list the live workers")
    p.set_defaults(run=lambda args: _run(args, _workers))

    actors = commands.add_parser("actors", help="find, inspect and repair the actors stored in Redis")
    sub = actors.add_subparsers(dest="action", required=True)
    p = sub.add_parser("list", parents=[common], help="list actors (filters combine)")
    p.add_argument("--state", choices=STATES)
    p.add_argument("--imports", metavar="NAME", help="only actors with this import table")
    p.add_argument("--owner", metavar="WORKER", help="only actors this worker holds")
    p.add_argument("--code", metavar="DIGEST", help="only actors running this code (a digest prefix)")
    p.add_argument("--limit", type=_positive, metavar="N", help="at most N actors (a page)")
    p.add_argument("--after", metavar="ID", help="start after this actor ID (the last one of the previous page)")
    p.set_defaults(run=lambda args: _run(args, _list))
    p = sub.add_parser("show", parents=[common], help="describe one actor")
    p.add_argument("id")
    p.add_argument("--snapshot", metavar="FILE", help="also write its state as a plain snapshot (mvactors info FILE)")
    p.set_defaults(run=lambda args: _run(args, _show))
    for name, what in (("pause", "run no more turns until resumed (mail is still accepted)"),
                       ("resume", "end a pause (a gas pause re-runs its turn)"),
                       ("retry", "repair a failed actor: its failed turn runs again"),
                       ("delete", "remove the actor, its mailbox and history")):
        p = sub.add_parser(name, parents=[common], help=what)
        p.add_argument("id")
        if name == "resume":
            p.add_argument("--extra-gas", type=int, metavar="N", help="instructions for the re-run turn")
        p.set_defaults(run=lambda args, name=name: _run(args, _repair))
    p = sub.add_parser("cancel", parents=[common], help="drop a message before it runs")
    p.add_argument("id")
    p.add_argument("message_id")
    p.set_defaults(run=lambda args: _run(args, _cancel))
    p = sub.add_parser("history", parents=[common], help="the kept turns of an actor, oldest first")
    p.add_argument("id")
    p.set_defaults(run=lambda args: _run(args, _history))
    p = sub.add_parser("upgrade", parents=[common], help="deploy a new snapshot to running actors, in mailbox order")
    p.add_argument("ids", nargs="*", metavar="ID")
    p.add_argument("snapshot", metavar="SNAPSHOT", help="the compiled snapshot file of the new code")
    p.add_argument("--imports", metavar="NAME", help="every actor with this import table (instead of IDs)")
    p.add_argument("--migrate", metavar="OUT:IN", help="export IDs: OUT on the old code, IN(value) on the new")
    p.add_argument("--timeout", type=float, default=30.0, metavar="S",
                   help="seconds to wait for a turn boundary with nothing pending (default 30)")
    p.set_defaults(run=lambda args: _run(args, _upgrade))
    p = sub.add_parser("fork", parents=[common], help="a new actor in the state after a kept turn")
    p.add_argument("id")
    p.add_argument("--turn", type=int, required=True, metavar="N")
    p.add_argument("--as", dest="new_id", metavar="NEW_ID", help="the new actor's ID (default: a new one)")
    p.set_defaults(run=lambda args: _run(args, _fork))
    p = sub.add_parser("reset", parents=[common], help="take an actor back to its state after a kept turn")
    p.add_argument("id")
    p.add_argument("--turn", type=int, required=True, metavar="N")
    p.add_argument("--reapply", action="store_true", help="queue the messages applied after N again, in order")
    p.set_defaults(run=lambda args: _run(args, _reset))
    p = sub.add_parser("replay", parents=[common], help="re-run the kept history here (exit 1 on divergence)")
    p.add_argument("id")
    p.add_argument("--snapshot", metavar="FILE", help="replay on this code instead of the actor's own")
    p.set_defaults(run=lambda args: _run(args, _replay))


def _run(args: argparse.Namespace, action: Callable[[Client, argparse.Namespace], Awaitable[int]]) -> int:
    url = args.redis or os.environ.get(_ENV)
    command = f"mvactors {args.command}" + (f" {args.action}" if getattr(args, "action", None) else "")
    if not url:
        return _fail(command, f"no Redis to connect to: pass --redis redis://host:port/0, or set {_ENV}")

    async def main() -> int:
        async with Client(url) as client:
            return await action(client, args)

    try:
        return anyio.run(main)
    except OpsError as exc:
        return _fail(command, str(exc))
    except ActorNotFound as exc:
        return _fail(command, f"{exc}; `mvactors actors list --redis {url}` lists the actors")
    except (ClusterError, UpgradeFailed, ValueError, TypeError, OSError) as exc:
        return _fail(command, str(exc))


def _fail(command: str, message: str) -> int:
    print(f"{command}: error: {message}", file=sys.stderr)
    return 2


# ---- output ----


def _emit_json(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        print(json.dumps(row, default=str))


def _table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # rich is optional: aligned plain text
        widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
        print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
        for r in rows:
            print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))
        return
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for r in rows:
        table.add_row(*r)
    # Piped output (a file, grep) gets wide rows rather than rich's 80 columns of wrapped cells.
    Console(width=None if sys.stdout.isatty() else 240).print(table)


def _ago(at: float | None) -> str:
    return "-" if at is None else f"{max(0.0, time.time() - at):.1f}s ago"


# ---- commands ----


async def _workers(client: Client, args: argparse.Namespace) -> int:
    rows = await client.workers()
    if args.json:
        _emit_json(rows)
    else:
        _table("workers", ["id", "host", "pid", "actors", "turns", "started", "seen"],
               [[w["id"], str(w["host"]), str(w["pid"]), str(w["actors"]), str(w["turns"]), _ago(w["started"]),
                 _ago(w["seen"])] for w in rows])
    return 0


def _state(info: dict[str, Any]) -> str:
    if info["paused"]:
        return f"paused ({info['paused']['reason']})"
    return str(info["state"])


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, not {text!r}")
    return value


async def _list(client: Client, args: argparse.Namespace) -> int:
    rows = []
    async for info in client.actors(state=args.state, imports=args.imports, owner=args.owner, code=args.code,
                                    limit=args.limit, after=args.after):
        if args.json:
            print(json.dumps(info, default=str))
        else:
            rows.append([info["id"], _state(info), str(info["turns"]), str(info["mailbox"]), info["imports"] or "-",
                         info["owner"] or "-", (info["code"] or "-")[:12], info["failed"] or ""])
    if not args.json:
        _table(f"{len(rows)} actors", ["id", "state", "turns", "mailbox", "imports", "owner", "code", "failed"], rows)
    return 0


async def _show(client: Client, args: argparse.Namespace) -> int:
    info = {"id": args.id, **await client.describe(args.id)}
    if args.snapshot:
        data = await client.snapshot(args.id)
        Path(args.snapshot).write_bytes(data)
        info["snapshot"] = args.snapshot
    if args.json:
        _emit_json([info])
    else:
        _table(f"actor {args.id}", ["field", "value"],
               [[k, json.dumps(v, default=str) if isinstance(v, (dict, list)) else str(v)] for k, v in info.items()])
    return 0


async def _repair(client: Client, args: argparse.Namespace) -> int:
    action = args.action
    if action == "pause":
        await client.pause(args.id, "mvactors actors pause")
    elif action == "resume":
        await client.resume(args.id, extra_gas=args.extra_gas)
    elif action == "retry":
        await client.retry(args.id)
    else:
        await client.delete(args.id)
    done = {"pause": "paused", "resume": "resumed", "retry": "retried", "delete": "deleted"}[action]
    if args.json:
        _emit_json([{"id": args.id, "done": done}])
    else:
        print(f"actor {args.id} {done}")
    return 0


async def _cancel(client: Client, args: argparse.Namespace) -> int:
    dropped = await client.cancel(args.id, args.message_id)
    if args.json:
        _emit_json([{"id": args.id, "message_id": args.message_id, "cancelled": dropped}])
    elif dropped:
        print(f"message {args.message_id} dropped before it ran (its caller gets Cancelled)")
    else:
        print(f"message {args.message_id} had already run; nothing was dropped")
    return 0


# ---- history, upgrade, fork, reset, replay ----


def _cell(value: Any) -> str:
    return json.dumps(value, default=str) if isinstance(value, (dict, list)) else str(value)


async def _history(client: Client, args: argparse.Namespace) -> int:
    rows = [entry async for entry in client.history(args.id)]
    if args.json:
        _emit_json(rows)
        return 0
    _table(f"actor {args.id}: {len(rows)} kept turns", ["turn", "kind", "export", "args", "outcome", "host calls"],
           [[str(e["turn"]), e["kind"], _cell(e["export"]), _cell(e["args"]),
             f"error {_cell(e['error'])}" if "error" in e else _cell(e.get("result", e.get("value"))),
             str(len(e["host_calls"]))] for e in rows])
    return 0


def _migrate(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    out, sep, into = text.partition(":")
    if not sep or not out.strip().isdigit() or not into.strip().isdigit():
        raise OpsError(f"--migrate takes two export IDs as OUT:IN, e.g. --migrate 10:11, not {text!r}")
    return int(out), int(into)


async def _upgrade(client: Client, args: argparse.Namespace) -> int:
    if bool(args.ids) == bool(args.imports):
        raise OpsError("name the actors: `mvactors actors upgrade ID... SNAPSHOT`, or "
                       "`mvactors actors upgrade --imports NAME SNAPSHOT` for every actor with that table")
    path = Path(args.snapshot)
    if not path.is_file():
        raise OpsError(f"no snapshot file {args.snapshot!r}; compile one with `mvactors compile script.js`")
    data = path.read_bytes()
    migrate = _migrate(args.migrate)
    ids = list(args.ids) or [info["id"] async for info in client.actors(imports=args.imports)]
    failed = 0
    for actor_id in ids:
        try:
            await client.upgrade(actor_id, data, migrate=migrate, timeout=args.timeout)
            outcome = {"id": actor_id, "upgraded": True}
        except UpgradeFailed as exc:
            failed += 1
            outcome = {"id": actor_id, "upgraded": False, "why": str(exc)}
        if args.json:
            _emit_json([outcome])
        elif outcome["upgraded"]:
            print(f"actor {actor_id} upgraded")
        else:
            print(f"actor {actor_id} NOT upgraded (it keeps its old code): {outcome['why']}")
    return 1 if failed else 0


async def _fork(client: Client, args: argparse.Namespace) -> int:
    new_id = await client.fork(args.id, turn=args.turn, actor_id=args.new_id)
    if args.json:
        _emit_json([{"id": args.id, "turn": args.turn, "fork": new_id}])
    else:
        print(f"actor {new_id} forked from {args.id} after turn {args.turn}")
    return 0


async def _reset(client: Client, args: argparse.Namespace) -> int:
    await client.reset(args.id, turn=args.turn, reapply=args.reapply)
    if args.json:
        _emit_json([{"id": args.id, "turn": args.turn, "reapply": args.reapply}])
    else:
        later = "queued again" if args.reapply else "dropped"
        print(f"actor {args.id} reset to its state after turn {args.turn} (the messages after it {later})")
    return 0


async def _replay(client: Client, args: argparse.Namespace) -> int:
    snapshot = None
    if args.snapshot:
        path = Path(args.snapshot)
        if not path.is_file():
            raise OpsError(f"no snapshot file {args.snapshot!r}; compile one with `mvactors compile script.js`")
        snapshot = path.read_bytes()
    report = await client.replay(args.id, snapshot=snapshot)
    diverged = report["diverged"]
    if args.json:
        _emit_json([{"id": args.id, **report}])
    elif diverged is None:
        print(f"replayed {report['turns']} turns of actor {args.id}: no divergence")
    else:
        print(f"actor {args.id} diverged at turn {diverged['turn']}: expected {_cell(diverged['expected'])}, "
              f"got {_cell(diverged['got'])}")
    return 0 if diverged is None else 1

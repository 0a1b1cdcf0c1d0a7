"""The ``mvactors`` command: compile guest scripts, inspect snapshots, call exports.

    mvactors compile script.js -o script.mvm-bc
    mvactors info script.mvm-bc
    mvactors call script.mvm-bc 1 '"World"' --print-import 1
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .compiler import compile as compile_script
from .errors import MicroviumError
from .vm import VM, null


def _json_value(value: Any) -> Any:
    """A JSON-friendly copy of a value returned by the guest."""
    if hasattr(value, "to_python"):
        value = value.to_python()
    if value is null:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, bytes):
        return list(value)
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if callable(value):
        return "<function>"
    return value


class _UsageError(Exception):
    """An argument that parsed but does not fit the snapshot; reported like argparse's own errors."""


def _existing_file(value: str) -> str:
    """argparse type: a path that exists, so a typo is a usage error naming the argument."""
    if not Path(value).is_file():
        raise argparse.ArgumentTypeError(f"no such file: {value!r}")
    return value


def _export_id(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an export ID; exports are numbered (`mvactors info FILE` lists them)"
        ) from None


def _json_arg(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        hint = f"; a string needs JSON quotes inside the shell's: '{json.dumps(value)}'" if value.isidentifier() else ""
        raise argparse.ArgumentTypeError(f"{value!r} is not JSON ({exc.msg} at column {exc.colno}){hint}") from None


def _gas(value: str) -> int:
    try:
        gas = int(value)
    except ValueError:
        gas = -1
    if gas < 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not an instruction count (a whole number >= 0)")
    return gas


def _load(path: str) -> bytes:
    if path.endswith((".js", ".mjs")):
        return compile_script(path)
    return Path(path).read_bytes()


def _cmd_compile(args: argparse.Namespace) -> int:
    snapshot = compile_script(Path(args.script))
    out = Path(args.output) if args.output else Path(args.script).with_suffix(".mvm-bc")
    out.write_bytes(snapshot)
    print(f"{out}: {len(snapshot)} bytes")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    snapshot = _load(args.snapshot)
    imports = _snapshot_imports(snapshot)
    with VM.restore(snapshot, {i: _stub for i in imports}) as vm:
        stats = vm.get_memory_stats()
        print(json.dumps({
            "bytes": len(snapshot),
            "engine_version": vm.engine_version,
            "required_engine_version": vm.required_engine_version,
            "imports": imports,
            "exports": sorted(vm.exports),
            "heap_bytes": stats.virtual_heap_used,
        }, indent=2))
    return 0


def _stub(*_args: Any) -> None:
    return None


def _snapshot_imports(snapshot: bytes) -> list[int]:
    # The import table is bytecode section 0 (header sectionOffsets[0..1]): 16-bit IDs.
    start = int.from_bytes(snapshot[12:14], "little")
    end = int.from_bytes(snapshot[14:16], "little")
    return [int.from_bytes(snapshot[i:i + 2], "little") for i in range(start, end, 2)]


def _cmd_call(args: argparse.Namespace) -> int:
    snapshot = _load(args.snapshot)
    printing = set(args.print_import or [])

    def printer(import_id: int) -> Callable[..., None]:
        def print_import(*values: Any) -> None:
            print(*(v if isinstance(v, str) else json.dumps(_json_value(v)) for v in values))
        return print_import

    imports: dict[int, Callable[..., Any]] = {i: (printer(i) if i in printing else _stub)
                                              for i in _snapshot_imports(snapshot)}
    call_args = args.args
    with VM.restore(snapshot, imports) as vm:
        if args.gas is not None:
            vm.stop_after_n_instructions(args.gas)
        if args.export not in vm.exports:
            raise _UsageError(f"argument export: the snapshot has no export {args.export}; "
                              f"it has {sorted(vm.exports)}")
        result = vm.exports[args.export](*call_args)
        print(json.dumps(_json_value(result)))
        if args.save:
            Path(args.save).write_bytes(vm.create_snapshot())
    return 0


def _add_worker_parser(commands: Any) -> None:
    """The cluster's ``worker`` subcommand, or, without the [redis] extra, one that says how to get it."""
    try:
        from .cluster.worker_cli import add_parser
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] != "redis":
            raise
        # No option prefix: whatever options follow are taken as they come, and the error says what is missing.
        p = commands.add_parser("worker", help='run actors stored in Redis (needs pip install "mvactors[redis]")',
                                prefix_chars="\0", add_help=False,
                                usage="mvactors worker --redis URL --imports MODULE:ATTR")
        p.add_argument("options", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        p.set_defaults(run=_worker_needs_redis)
        return
    add_parser(commands)
    from .cluster.ops_cli import add_parsers
    add_parsers(commands)


def _worker_needs_redis(args: argparse.Namespace) -> int:
    raise _UsageError('the worker runs actors stored in Redis and needs redis-py: pip install "mvactors[redis]"')


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mvactors`` console script."""
    parser = argparse.ArgumentParser(prog="mvactors", description="Microvium snapshots in Python.")
    parser.add_argument("--version", action="version", version=f"mvactors {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("compile", help="compile a guest script to a snapshot")
    p.add_argument("script", type=_existing_file)
    p.add_argument("-o", "--output", help="snapshot path (default: the script's name with .mvm-bc)")
    p.set_defaults(run=_cmd_compile)

    p = commands.add_parser("info", help="describe a snapshot (or script): size, versions, imports, exports")
    p.add_argument("snapshot", type=_existing_file)
    p.set_defaults(run=_cmd_info)

    p = commands.add_parser("call", help="restore a snapshot (or script) and call one export")
    p.add_argument("snapshot", type=_existing_file)
    p.add_argument("export", type=_export_id)
    p.add_argument("args", nargs="*", type=_json_arg, metavar="JSON",
                   help="arguments as JSON, e.g. 42 '\"text\"' '[1, 2]'")
    p.add_argument("--print-import", type=int, action="append", metavar="ID",
                   help="import ID that prints its arguments (others return undefined)")
    p.add_argument("--gas", type=_gas, help="instruction budget")
    p.add_argument("--save", metavar="PATH", help="write the VM's snapshot after the call")
    p.set_defaults(run=_cmd_call)

    _add_worker_parser(commands)
    from .dashboard.cli import add_parser as add_dashboard_parser  # its own module: needs no extra to register

    add_dashboard_parser(commands)

    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except _UsageError as exc:
        commands.choices[args.command].error(str(exc))
    except (MicroviumError, OSError, ValueError, KeyError) as exc:
        print(f"mvactors: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

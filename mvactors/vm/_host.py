"""Host functions: the import map, and the guest's calls into it, synchronous and asynchronous.

An asynchronous call keeps the guest's continuation in a handle under a token
(``vm._async_ops``) until :func:`resolve_async` settles the guest's promise.
"""

from __future__ import annotations

import inspect
import struct
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio

from ..errors import E_HOST_ERROR, MicroviumError
from ..imports import AsyncImport
from ._abi import (
    CALL_INFO_ARGC,
    CALL_INFO_ARGS,
    CALL_INFO_ASYNC,
    CALL_INFO_RESULT,
    FALSE,
    IMPORT_ASYNC,
    MAX_ID,
    MAX_IMPORTS,
    NO_OP_FUNC,
    TRUE,
    UNDEFINED,
)
from ._marshal import hold_value, release, slot_value, to_guest
from ._promises import fail_pending, settle_promises

if TYPE_CHECKING:
    from .machine import VM

ImportMap = Mapping[int, Callable[..., Any]]
"""Import ID (0..0xFFFF) -> host function."""
AsyncHandler = Callable[[int, int, Callable[..., Awaitable[Any]], list[Any]], None]
"""handler(token, import_id, fn, args): runs an async host call and later calls ``VM.resolve_async``."""

_PLAIN_RESULTS = frozenset({type(None), bool, int, float, str, bytes, list, tuple, dict})


def rejection_value(exc: BaseException) -> dict[str, str]:
    """The guest-side rejection value for a Python exception: ``{name, message}``."""
    return {"name": type(exc).__name__, "message": str(exc)}


async def run_async_import(fn: Callable[..., Awaitable[Any]], args: list[Any]) -> tuple[bool, Any]:
    """Await an async host function; returns (ok, value or rejection value)."""
    try:
        return True, await fn(*args)
    except Exception as exc:
        return False, rejection_value(exc)


_import_tables: dict[tuple[tuple[int, Any], ...], tuple[dict[int, Any], bytes]] = {}


def prepare_imports(imports: ImportMap | None) -> tuple[dict[int, Any], bytes]:
    """Validate an import map; returns a private copy and the glue's packed import table.

    Cached by the map's contents: actors restore with the same map over and over.
    """
    if not imports:
        return {}, b""
    try:
        key = tuple(imports.items())
        cached = _import_tables.get(key)
    except TypeError:  # an unhashable callable: no caching
        key, cached = (), None
    if cached is not None:
        return cached
    copy = dict(imports)  # private: later changes to the caller's map don't apply
    for import_id, fn in copy.items():
        if not isinstance(import_id, int) or isinstance(import_id, bool) or not 0 <= import_id <= MAX_ID:
            raise TypeError(f"import IDs must be ints in 0..0xFFFF, got {import_id!r}")
        if not callable(fn):
            raise TypeError(f"import {import_id} must be callable, not {type(fn).__name__}")
    if len(copy) > MAX_IMPORTS:
        raise MicroviumError(f"at most {MAX_IMPORTS} imports are supported", "MVM_E_INVALID_ARGUMENTS")
    # Sorted by ID (the glue binary-searches it); the async flag rides above the ID bits.
    entries = [i | (IMPORT_ASYNC if is_async_import(copy[i]) else 0) for i in sorted(copy)]
    prepared = (copy, struct.pack(f"<{len(entries)}I", *entries))
    if key:
        if len(_import_tables) >= 256:
            _import_tables.clear()
        _import_tables[key] = prepared
    return prepared


def is_async_import(fn: Callable[..., Any]) -> bool:
    """True for host functions that give the guest a promise.

    ``async def`` functions, callables wrapped with :func:`async_import` and
    objects whose ``__call__`` is ``async def``.
    """
    return (isinstance(fn, AsyncImport) or inspect.iscoroutinefunction(fn)
            or inspect.iscoroutinefunction(type(fn).__call__))


def on_host_call(vm: VM, import_id: int) -> int:
    """The guest calls import ``import_id`` (engine callback): run it, write its result; an mvm_TeError."""
    try:
        info = vm._inst.call_info  # type: ignore[union-attr]
        fn = vm._imports[import_id]
        argc = info[CALL_INFO_ARGC]
        if argc:
            mem16 = vm._mem16
            first = info[CALL_INFO_ARGS] >> 1
            from_guest = vm._from_guest
            py_args = [from_guest(mem16[first + i]) for i in range(argc)]
        else:
            py_args = []
        if info[CALL_INFO_ASYNC]:
            start_async(vm, import_id, fn, py_args)
            return 0
        ret = fn(*py_args)
        if vm._inst is None:  # the host function closed this VM: unwind the guest
            vm._host_exception = None
            return E_HOST_ERROR
        if ret is None:
            vm._mem16[info[CALL_INFO_RESULT] >> 1] = UNDEFINED
            return 0
        if type(ret) not in _PLAIN_RESULTS and inspect.isawaitable(ret):
            close = getattr(ret, "close", None)
            if close is not None:
                close()
            raise TypeError(f"host function {import_id} returned an awaitable; declare it `async def` "
                            "or wrap it with mvactors.async_import() so the guest gets a promise")
        vm._mem16[info[CALL_INFO_RESULT] >> 1] = to_guest(vm, ret)
        return 0
    except BaseException as exc:
        vm._host_exception = (import_id, exc)
        return E_HOST_ERROR


def on_breakpoint(vm: VM, address: int) -> None:
    """The guest reached a breakpoint (engine callback); the hook's exception is raised after the call."""
    hook = vm._breakpoint_hit
    if hook is None:
        return
    try:
        hook(address)
    except BaseException as exc:
        if vm._breakpoint_exception is None:
            vm._breakpoint_exception = exc


def start_async(vm: VM, import_id: int, fn: Callable[..., Any], args: list[Any]) -> None:
    """The guest called an async import: keep its continuation under a new token and start ``fn``."""
    token = vm._next_token
    vm._next_token += 1
    vm._async_ops[token] = hold_value(vm, vm._mem16[vm._layout.callback >> 1])
    fn = fn.fn if isinstance(fn, AsyncImport) else fn
    handler = vm.async_handler
    if handler is not None:
        handler(token, import_id, fn, args)
        return
    if vm._task_group is None:
        release(vm, vm._async_ops.pop(token))
        raise MicroviumError(
            f"the guest called async host function {import_id} outside `async with vm:`; "
            "enter the VM with `async with` so host async work has a task scope", "MVM_E_ASYNC_START_ERROR")

    async def run() -> None:
        with anyio.CancelScope() as scope:
            vm._host_tasks[token] = scope
            try:
                ok, value = await run_async_import(fn, args)
            finally:
                vm._host_tasks.pop(token, None)
        if scope.cancelled_caught:
            return  # abandoned (see abandon_host_calls), its promise already rejected
        if vm._inst is not None:
            try:
                vm.resolve_async(token, ok, value)
            except MicroviumError as exc:
                fail_pending(vm, exc)

    vm._task_group.start_soon(run)


def resolve_async(vm: VM, token: int, ok: bool, value: Any) -> None:
    """Settle the guest promise of asynchronous host call ``token`` and run what it unblocks.

    ``ok`` fulfils the promise with ``value``; otherwise it is rejected
    with ``value``.  A value that cannot be passed to the guest rejects it
    with ``{name, message}`` of the conversion error.  Raises the VM's
    errors (GasExhausted, VMUnusable) if the resumed guest code fails so.
    """
    slot = vm._async_ops.pop(token, None)
    if slot is None:
        raise KeyError(f"no pending asynchronous host call {token}")
    try:
        try:
            guest_value = to_guest(vm, value)
        except (TypeError, OverflowError, ValueError, MicroviumError) as exc:
            ok, guest_value = False, to_guest(vm, rejection_value(exc))
        vm._mem16[vm._arg0 + vm._handle_stride] = guest_value
        vm._mem16[vm._arg0] = TRUE if ok else FALSE
        if slot_value(vm, slot) != NO_OP_FUNC:  # (a continuation that ignores the result need not run)
            vm._call_raw_slot(slot, 2)
    finally:
        release(vm, slot)
        if vm._pending:
            settle_promises(vm)


def abandon_host_calls(vm: VM) -> None:
    """No Python task awaits the VM's promises any more: cancel the host calls running in
    ``async with vm:`` and reject their guest promises with ``{name: "Cancelled"}``.

    Whoever awaited the guest call that started them gave up (a timeout, a cancel scope), so
    nothing waits for their results; leaving ``async with vm`` then does not wait for them.
    """
    for token, scope in list(vm._host_tasks.items()):
        scope.cancel()
        del vm._host_tasks[token]
        if vm._inst is not None and token in vm._async_ops:
            try:
                resolve_async(vm, token, False, {"name": "Cancelled", "message": "the awaiting caller was cancelled"})
            except MicroviumError as exc:
                fail_pending(vm, exc)


def cancel_async(vm: VM, token: int) -> None:
    """Forget asynchronous host call ``token``: its guest continuation never runs."""
    slot = vm._async_ops.pop(token, None)
    if slot is not None:
        release(vm, slot)

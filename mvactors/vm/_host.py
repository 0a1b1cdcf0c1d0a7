"""The VM's asynchronous side: host functions the guest calls, and guest promises Python awaits.

* The import map: :func:`prepare_imports` validates it into the glue's table.
* Host calls: the engine calls ``on_host_call`` while the guest runs.  An
  asynchronous call keeps the guest's continuation in a handle under a token
  (``_async_ops``) until :meth:`HostSide.resolve_async` settles the guest's promise.
* Guest promises: awaiting a pending one parks an event in ``_pending`` (slot ->
  event and outcome); every guest call that returns checks them while any are
  parked.  A cancelled last awaiter abandons the host calls in flight.

``HostSide`` is the VM's mixin for all three (see _state).
"""

from __future__ import annotations

import inspect
import struct
import types
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio

from ..errors import E_HOST_ERROR, GuestError, MicroviumError
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
    PROMISE_STATE_NAMES,
    TRUE,
    UNDEFINED,
    PromiseState,
)
from ._marshal import Marshal
from .values import GuestPromise, observe, slot_in, slot_of

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
    if isinstance(fn, AsyncImport):
        return True
    # A function or bound method: its code's flag is inspect's whole answer, without inspect's
    # unwrapping (2 x ~3 µs per import, paid at every spawn and wake of an actor whose map,
    # of bound methods say, misses the table cache).
    code = getattr(getattr(fn, "__func__", fn), "__code__", None)
    if isinstance(code, types.CodeType):
        return bool(code.co_flags & inspect.CO_COROUTINE)
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)


class HostSide(Marshal):
    """The engine's callbacks into the VM (the ``Host`` protocol of _wasm), async host calls and guest promises."""

    __slots__ = ()

    # ---- host functions: the engine's callbacks ----

    def on_host_call(self, import_id: int) -> int:
        """The guest calls import ``import_id`` (engine callback): run it, write its result; an mvm_TeError."""
        try:
            info = self._inst.call_info  # type: ignore[union-attr]
            fn = self._imports[import_id]
            argc = info[CALL_INFO_ARGC]
            if argc:
                mem16 = self._mem16
                first = info[CALL_INFO_ARGS] >> 1
                from_guest = self._from_guest
                py_args = [from_guest(mem16[first + i]) for i in range(argc)]
            else:
                py_args = []
            if info[CALL_INFO_ASYNC]:
                self._start_async(import_id, fn, py_args)
                return 0
            ret = fn(*py_args)
        except BaseException as exc:
            self._host_exception = (import_id, exc)
            return E_HOST_ERROR
        return self._host_returned(import_id, ret)

    def _host_returned(self, import_id: int, ret: Any) -> int:
        """Write what host function ``import_id`` returned as the guest's result; an mvm_TeError.

        The C host-call path (_fastcall.c) calls this for results it does not encode itself.
        """
        try:
            info = self._inst.call_info if self._inst is not None else None
            if info is None:  # the host function closed this VM: unwind the guest
                self._host_exception = None
                return E_HOST_ERROR
            if ret is None:
                self._mem16[info[CALL_INFO_RESULT] >> 1] = UNDEFINED
                return 0
            if type(ret) not in _PLAIN_RESULTS and inspect.isawaitable(ret):
                close = getattr(ret, "close", None)
                if close is not None:
                    close()
                raise TypeError(f"host function {import_id} returned an awaitable; declare it `async def` "
                                "or wrap it with mvactors.async_import() so the guest gets a promise")
            self._mem16[info[CALL_INFO_RESULT] >> 1] = self._to_guest(ret)
            return 0
        except BaseException as exc:
            self._host_exception = (import_id, exc)
            return E_HOST_ERROR

    def on_breakpoint(self, address: int) -> None:
        """The guest reached a breakpoint (engine callback); the hook's exception is raised after the call."""
        hook = self._breakpoint_hit
        if hook is None:
            return
        try:
            hook(address)
        except BaseException as exc:
            if self._breakpoint_exception is None:
                self._breakpoint_exception = exc

    # ---- asynchronous host calls ----

    def _start_async(self, import_id: int, fn: Callable[..., Any], args: list[Any]) -> None:
        """The guest called an async import: keep its continuation under a new token and start ``fn``."""
        token = self._next_token
        self._next_token += 1
        self._async_ops[token] = self._hold_value(self._mem16[self._layout.callback >> 1])
        fn = fn.fn if isinstance(fn, AsyncImport) else fn
        handler = self.async_handler
        if handler is not None:
            handler(token, import_id, fn, args)
            return
        task_group = self._task_group
        if task_group is None:
            self.release(self._async_ops.pop(token))
            raise MicroviumError(
                f"the guest called async host function {import_id} outside `async with vm:`; "
                "enter the VM with `async with` so host async work has a task scope", "MVM_E_ASYNC_START_ERROR")

        async def run() -> None:
            with anyio.CancelScope() as scope:
                self._host_tasks[token] = scope
                try:
                    ok, value = await run_async_import(fn, args)
                finally:
                    self._host_tasks.pop(token, None)
            if scope.cancelled_caught:
                return  # abandoned (see _abandon_host_calls), its promise already rejected
            if self._inst is not None:
                try:
                    self.resolve_async(token, ok, value)
                except MicroviumError as exc:
                    self._fail_pending(exc)

        task_group.start_soon(run)

    def resolve_async(self, token: int, ok: bool, value: Any) -> None:
        """Settle the guest promise of asynchronous host call ``token`` and run what it unblocks.

        ``ok`` fulfils the promise with ``value``; otherwise it is rejected
        with ``value``.  A value that cannot be passed to the guest rejects it
        with ``{name, message}`` of the conversion error.  Raises the VM's
        errors (GasExhausted, VMUnusable) if the resumed guest code fails so.
        """
        slot = self._async_ops.pop(token, None)
        if slot is None:
            raise KeyError(f"no pending asynchronous host call {token}")
        try:
            try:
                guest_value = self._to_guest(value)
            except (TypeError, OverflowError, ValueError, MicroviumError) as exc:
                ok, guest_value = False, self._to_guest(rejection_value(exc))
            self._mem16[self._arg0 + self._handle_stride] = guest_value
            self._mem16[self._arg0] = TRUE if ok else FALSE
            if self._slot_value(slot) != NO_OP_FUNC:  # (a continuation that ignores the result need not run)
                self._call_raw_slot(slot, 2)
        finally:
            self.release(slot)
            if self._pending:
                self._settle_promises()

    def _abandon_host_calls(self) -> None:
        """No Python task awaits the VM's promises any more: cancel the host calls running in
        ``async with vm:`` and reject their guest promises with ``{name: "Cancelled"}``.

        Whoever awaited the guest call that started them gave up (a timeout, a cancel scope), so
        nothing waits for their results; leaving ``async with vm`` then does not wait for them.
        """
        for token, scope in list(self._host_tasks.items()):
            scope.cancel()
            del self._host_tasks[token]
            if self._inst is not None and token in self._async_ops:
                try:
                    self.resolve_async(token, False,
                                       {"name": "Cancelled", "message": "the awaiting caller was cancelled"})
                except MicroviumError as exc:
                    self._fail_pending(exc)

    def cancel_async(self, token: int) -> None:
        """Forget asynchronous host call ``token``: its guest continuation never runs."""
        slot = self._async_ops.pop(token, None)
        if slot is not None:
            self.release(slot)

    # ---- guest promises ----

    async def await_promise(self, promise: GuestPromise) -> Any:
        """The settled value of ``promise``; waits (without blocking the loop) while it is pending."""
        slot = slot_of(promise)
        inst = self._live()
        state = inst.promise_state(self._slot_value(slot))
        if state == PromiseState.FULFILLED:
            return self._result_value()
        if state == PromiseState.REJECTED:
            raise GuestError(self._result_value())
        entry = self._pending.get(slot)
        if entry is None:
            entry = self._pending[slot] = (anyio.Event(), [])
            self._slow = True
        event, outcome = entry
        self._waiters += 1
        try:
            await event.wait()
        finally:
            self._waiters -= 1
            if not event.is_set() and not self._waiters:
                # Cancelled, and the last one waiting: the host calls in flight are nobody's now.
                self._abandon_host_calls()
        result = outcome[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def _settle_promises(self) -> None:
        """Wake the awaiters of promises that a guest call just settled."""
        inst = self._inst
        if inst is None:
            return
        for slot, (event, outcome) in list(self._pending.items()):
            state = inst.promise_state(self._slot_value(slot))
            if state == PromiseState.PENDING:
                continue
            del self._pending[slot]
            value = self._result_value()
            outcome.append(value if state == PromiseState.FULFILLED else GuestError(value))
            event.set()
        self._update_slow()

    def _fail_pending(self, exc: BaseException) -> None:
        """Make every awaited promise raise ``exc`` (the VM cannot settle them any more)."""
        for event, outcome in self._pending.values():
            outcome.append(exc)
            event.set()
        self._pending.clear()
        self._update_slow()

    def promise_outcome(self, promise: GuestPromise) -> tuple[str, Any]:
        """``(state, value)`` of a guest promise without awaiting it.

        ``state`` is ``"pending"`` (value None), ``"fulfilled"`` or ``"rejected"``.
        """
        slot = slot_in(promise, self)
        if slot < 0:
            raise TypeError("the promise belongs to another VM")
        observe(promise)
        state = self._live().promise_state(self._slot_value(slot))
        if state in (PromiseState.FULFILLED, PromiseState.REJECTED):
            return PROMISE_STATE_NAMES[state], self._result_value()
        return PROMISE_STATE_NAMES[PromiseState.PENDING], None

    def promise_state(self, slot: int) -> str:
        """``"pending"``, ``"fulfilled"`` or ``"rejected"``."""
        state = self._live().promise_state(self._slot_value(slot))
        return PROMISE_STATE_NAMES.get(state, PROMISE_STATE_NAMES[PromiseState.PENDING])


__all__ = ["AsyncHandler", "HostSide", "ImportMap", "is_async_import", "prepare_imports", "rejection_value",
           "run_async_import"]

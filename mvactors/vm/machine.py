"""``VM``: one restored Microvium snapshot, the Python counterpart of @microvium/runtime.

This module holds the VM's lifetime (restore, wake, close), its debugging and
metering surface and its calls into the guest.  The rest of its behaviour is
inherited from one mixin per concept, each in its own module (see _state):
``_state`` (fields, the instance's life, memory statistics), ``_marshal``
(values, handles, the proxies' :class:`~mvactors.vm.values.GuestHeap`
surface), ``_host`` (host functions, async host calls, guest promises) and
``_persist`` (snapshots, savepoints, hibernation).
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NoReturn

import anyio

from ..errors import E_HOST_ERROR, ExportNotFound, MicroviumError, TimeLimitExceeded, VMUnusable
from . import _pool
from . import _wasm as _engine
from ._abi import CALL_ARGC_SHIFT, CALL_GUARD, INT14_BIAS, INT14_MAX, INT14_MIN, INT14_SIGN, INT14_TAG, MAX_ID
from ._calls import call_error
from ._host import ImportMap, prepare_imports
from ._persist import Hibernation, Persistence, heap_size
from ._state import MemoryStats
from .snapshot import SnapshotLike, check_size, export_ids, load_snapshot, required_version, restore_error
from .snapshot import snapshot_bytes as _snapshot_bytes
from .values import GuestRef, slot_of

DEFAULT_TIME_LIMIT = _engine.DEFAULT_TIME_LIMIT
"""The hard stop's default: seconds one entry into the engine may run (``VM.restore(time_limit=)``)."""


def load_engine() -> None:
    """Load and compile the WebAssembly engine now instead of at the first restore.

    Raises RuntimeError (``EngineMissing``) saying how to fix it when the build
    is missing or stale; a service calls this at startup so that a broken
    install stops the process rather than failing the snapshots it runs.
    """
    _engine.WasmEngine.get()


def check_time_limit(time_limit: float | None) -> float | None:
    """``time_limit`` as a float (or None); TypeError or ValueError naming it if it is not one."""
    if time_limit is None:
        return None
    if isinstance(time_limit, bool) or not isinstance(time_limit, (int, float)):
        raise TypeError(f"time_limit must be a number of seconds or None, not {type(time_limit).__name__}")
    if not 0 < time_limit < math.inf:
        raise ValueError(f"time_limit must be a positive, finite number of seconds (or None), got {time_limit!r}")
    return float(time_limit)


class Exports(Mapping[int, Any]):
    """The snapshot's exports by ID; values are resolved on first use."""

    def __init__(self, vm: VM, cache: dict[int, Any], snapshot: bytes) -> None:
        self._vm: VM | None = vm  # None once the VM is closed (no cycle keeps a closed VM alive)
        self._cache = cache  # the VM's: a rollback forgets what it resolved since the savepoint
        self._snapshot = snapshot

    def _live_vm(self) -> VM:
        vm = self._vm
        if vm is None:
            raise VMUnusable("the VM is closed", "MVM_E_FATAL_ERROR_MUST_KILL_VM")
        return vm

    def __getitem__(self, export_id: int) -> Any:
        found = self._cache.get(export_id)
        if found is None:
            found = self._cache[export_id] = self._live_vm()._resolve_export(export_id)
        return found

    def __iter__(self) -> Iterator[int]:
        self._live_vm()
        return iter(export_ids(self._snapshot))

    def __len__(self) -> int:
        self._live_vm()
        return len(export_ids(self._snapshot))

    def __contains__(self, export_id: object) -> bool:
        self._live_vm()
        return export_id in export_ids(self._snapshot)


class VM(Persistence):
    """A running Microvium VM restored from a snapshot.

    Create with :meth:`VM.restore`.  Use as ``with vm:`` (closes it) or
    ``async with vm:`` (also runs asynchronous host functions in a task group
    and waits for them before closing).
    """

    __slots__ = ("exports",)

    def __init__(self, instance: _engine.Instance, snapshot: bytes, imports: ImportMap,
                 breakpoint_hit: Callable[[int], Any] | None, time_limit: float | None) -> None:
        super().__init__(instance, snapshot, imports if isinstance(imports, dict) else dict(imports), breakpoint_hit,
                         time_limit)
        self.exports: Exports = Exports(self, self._export_cache, snapshot)

    # ---- construction and lifetime ----

    @classmethod
    def restore(cls, snapshot: SnapshotLike, imports: ImportMap | None = None,
                breakpoint_hit: Callable[[int], Any] | None = None,
                time_limit: float | None = _engine.DEFAULT_TIME_LIMIT) -> VM:
        """Restore ``snapshot`` into a fresh VM without running any guest code.

        ``imports`` maps import IDs (0..0xFFFF) to host functions; ``async def``
        functions (or ones wrapped with :func:`mvactors.async_import`) give the
        guest a promise.  ``breakpoint_hit(address)`` is called at breakpoints.

        ``time_limit`` is the hard stop: seconds (default 5) that one entry
        into the engine (a call, or a host-side operation such as a property
        read) may run before it is ended with :class:`TimeLimitExceeded`,
        whatever the guest or a corrupt snapshot does; the VM is unusable
        afterwards.  Time spent in host functions does not count, and a host
        function calling back into the VM starts a new entry.  ``None``
        disables it and runs the VM on an engine compiled without the stop's
        checks, which make guest-heavy code ~25% slower (bench/hardstop.py):
        for snapshots you trust.  For a budget the guest can recover from,
        use :meth:`stop_after_n_instructions`.
        """
        data = _snapshot_bytes(snapshot)
        imports, table = prepare_imports(imports)
        if breakpoint_hit is not None and not callable(breakpoint_hit):
            raise TypeError("breakpoint_hit must be callable")
        time_limit = check_time_limit(time_limit)
        check_size(data)
        instance = _pool.take(stoppable=time_limit is not None)
        load_snapshot(instance, data, table)
        instance.state32[instance.layout.import_count_word] = len(imports)
        vm = cls(instance, data, imports, breakpoint_hit, time_limit)
        vm._boot(instance)
        return vm

    def _boot(self, instance: _engine.Instance) -> None:
        """Have the engine restore the snapshot written into ``instance``; the VM is ready after it."""
        data = self._snapshot
        layout = instance.layout
        try:
            err = instance.restore(len(data), self._breakpoint_hit is not None)
        except _engine.EngineTrap as trap:
            self._inst = None
            instance.close()
            error = TimeLimitExceeded if trap.time_limit is not None else VMUnusable
            raise error(f"the engine failed while restoring the snapshot: {trap}",
                        trap.fatal_code or "MVM_E_UNEXPECTED") from None
        if err:
            self._discard_instance()
            missing = ctypes.c_int32.from_address(instance.base + layout.missing_import).value
            raise restore_error(err, data, layout.engine_version, missing)
        state32 = instance.state32
        self._scratch = state32[layout.scratch_word]
        self._handles = state32[layout.handles_word]
        self._handles16 = self._handles >> 1
        self._gc_heap = heap_size(data)

    @classmethod
    def wake(cls, hibernation: Hibernation, imports: ImportMap | None = None,
             breakpoint_hit: Callable[[int], Any] | None = None,
             time_limit: float | None = _engine.DEFAULT_TIME_LIMIT) -> tuple[VM, dict[Any, Any]]:
        """Restore a :meth:`hibernate` record: the VM, with its pending async calls and kept references.

        Returns the VM and a dict mapping each ``keep`` key to a fresh proxy.
        """
        vm = cls.restore(hibernation.snapshot, imports, breakpoint_hit, time_limit)
        return vm, vm._wake_refs(hibernation)

    def close(self) -> None:
        """Release the VM; its WebAssembly instance goes back to a pool for reuse."""
        self._close(may_be_running=True)

    def _close(self, may_be_running: bool) -> None:
        inst = self._inst
        if inst is None:
            return
        self._inst = None
        self._slow = True
        # Break the VM <-> exports <-> proxies cycle: a closed VM is freed by reference
        # counting at once, instead of waiting for (and feeding) the cyclic GC.
        self._export_cache.clear()
        self.exports._vm = None
        self.async_handler = None
        for event, outcome in self._pending.values():
            outcome.append(VMUnusable("the VM was closed while this promise was pending", "MVM_E_UNEXPECTED"))
            event.set()
        self._pending.clear()
        self._async_ops.clear()
        if may_be_running and inst.busy:
            self._closed_reason = "the VM was closed by a host function while the guest was running"
        _pool.give_back(inst, may_be_running)

    def __del__(self) -> None:
        try:
            self._close(may_be_running=False)
        except Exception:
            pass

    def __enter__(self) -> VM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> VM:
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._task_group = tg
        return self

    async def __aexit__(self, *exc: Any) -> bool | None:
        tg = self._task_group
        try:
            if tg is not None:
                return await tg.__aexit__(*exc)
            return None
        except BaseExceptionGroup as group:
            # One failure (the body's, or one host task's) comes out as itself, not
            # wrapped in a group, as it would from plain code.
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise
        finally:
            self._task_group = None
            self.close()

    @property
    def closed(self) -> bool:
        """True once the VM was closed or hit a fatal engine error."""
        return self._inst is None

    # ---- public API ----

    @property
    def engine_version(self) -> str:
        """Version of the Microvium engine running this VM, e.g. ``"8.0.0"``."""
        return self._layout.engine_version

    @property
    def required_engine_version(self) -> str:
        """Engine version the snapshot was compiled for."""
        return required_version(self._snapshot)

    def stop_after_n_instructions(self, n: int) -> None:
        """Stop guest code after ``n`` more instructions (GasExhausted); -1 disables."""
        if not isinstance(n, int) or n < -1 or n > 0x7FFFFFFF:
            raise ValueError(f"instruction count must be -1 or 0..2**31-1, got {n!r}")
        self._gas_counter().value = n

    def get_remaining_instructions(self) -> int:
        """Instructions left before the VM stops, or -1 when the counter is disabled."""
        return int(self._gas_counter().value)

    def _gas_counter(self) -> Any:
        # The engine's counter is a plain field of its VM struct: metered actors read and
        # write it every turn, so a view beats two calls into the engine.
        counter = self._gas
        if counter is None or self._inst is None:
            inst = self._live()
            vm_struct = inst.state32[self._layout.vm_word]
            counter = self._gas = ctypes.c_int32.from_address(self._base + vm_struct + self._layout.gas_offset)
        return counter

    def set_breakpoint(self, address: int) -> None:
        """Break before executing bytecode ``address`` (-1: every instruction)."""
        self._require_breakpoints()
        self._live().set_breakpoint(address)

    def remove_breakpoint(self, address: int) -> None:
        """Remove a breakpoint set with :meth:`set_breakpoint`."""
        self._require_breakpoints()
        self._live().remove_breakpoint(address)

    @property
    def current_address(self) -> int:
        """Bytecode address currently executing (meaningful inside ``breakpoint_hit``)."""
        return int(self._live().current_address())

    def _require_breakpoints(self) -> None:
        if self._breakpoint_hit is None:
            raise MicroviumError("breakpoints need a breakpoint_hit callback passed to VM.restore",
                                 "MVM_E_INVALID_ARGUMENTS")

    @property
    def pending_async_calls(self) -> list[int]:
        """Tokens of asynchronous host calls the guest is still waiting on."""
        return list(self._async_ops)

    # ---- calls ----

    def call(self, slot: int, args: tuple[Any, ...], this: GuestRef | None = None) -> Any:
        """Call the guest function held in handle ``slot`` (``this``: a method call)."""
        inst = self._inst
        if inst is None:
            raise self._unusable()
        n = len(args)
        if n:
            self._write_args(args)
        try:
            if this is None:
                r = inst.call(CALL_GUARD | slot | (n << CALL_ARGC_SHIFT))
            else:
                self._mem16[self._this16] = self._slot_value(slot_of(this))
                r = inst.call_this(CALL_GUARD | slot | (n << CALL_ARGC_SHIFT))
        except _engine.EngineTrap as trap:
            raise self._die(trap) from None
        return self._call_result(r)

    def _write_args(self, args: tuple[Any, ...]) -> None:
        if len(args) > self._max_args:
            raise TypeError(f"at most {self._max_args} arguments can be passed to the guest, got {len(args)}")
        mem16 = self._mem16
        i = self._arg0
        for arg in args:
            # Small ints are encoded here (int14) to keep the common call to one wasm call.
            if type(arg) is int and INT14_MIN <= arg <= INT14_MAX:
                mem16[i] = ((arg << 2) | INT14_TAG) & 0xFFFF
            else:
                mem16[i] = self._to_guest(arg)
            i += self._handle_stride

    def _call_result(self, r: int) -> Any:
        if r < 0:
            self._raise_call_error(-r)
        if r & INT14_TAG == INT14_TAG:
            value: Any = (r >> 2) - INT14_BIAS if r & INT14_SIGN else r >> 2
        else:
            value = self._from_guest(r, promise_ok=True)
        if self._pending:
            self._settle_promises()
        if self._breakpoint_exception is not None:
            exc, self._breakpoint_exception = self._breakpoint_exception, None
            raise exc
        return value

    def _trapped(self, error: int | None = None) -> VMUnusable:
        inst = self._live()
        try:
            inst.fail(error)
        except _engine.EngineTrap as trap:
            return self._die(trap)
        raise AssertionError("unreachable")

    def _raise_call_error(self, err: int) -> NoReturn:
        if self._pending:
            self._settle_promises()
        if err == E_HOST_ERROR and self._inst is None:  # a host function closed this VM
            raise self._unusable()
        host_exception = None
        if err == E_HOST_ERROR:
            host_exception, self._host_exception = self._host_exception, None
        raise call_error(err, self._result_value, host_exception)

    def _resolve_export(self, export_id: int) -> Any:
        if not isinstance(export_id, int) or not 0 <= export_id <= MAX_ID:
            raise ExportNotFound(f"export IDs are ints in 0..0xFFFF, got {export_id!r}", "MVM_E_UNRESOLVED_EXPORT")
        inst = self._live()
        r = self._guard(lambda: inst.export(export_id))
        if r < 0:
            ids = sorted(export_ids(self._snapshot))
            raise ExportNotFound(f"the snapshot has no export {export_id} (exports: {ids})", -r)
        return self._from_guest(r)

    def _call_raw_slot(self, slot: int, argc: int) -> None:
        inst = self._live()
        try:
            r = inst.call(CALL_GUARD | slot | (argc << CALL_ARGC_SHIFT))
        except _engine.EngineTrap as trap:
            raise self._die(trap) from None
        if r < 0:
            self._raise_call_error(-r)

    @property
    def vm(self) -> VM:
        """This VM (the GuestHeap its proxies live in)."""
        return self


__all__ = ["VM", "Exports", "MemoryStats"]

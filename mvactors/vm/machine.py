"""``VM``: one restored Microvium snapshot, the Python counterpart of @microvium/runtime.

This module holds the VM's state, its lifetime (restore, close) and its calls
into the guest.  The rest of its behaviour lives in one module per concept and
is bound here as methods: ``_marshal`` (values, handles, the proxies'
:class:`~mvactors.vm.values.GuestHeap` surface), ``_host`` (host functions,
async host calls), ``_promises``, ``_persist`` (savepoints, hibernation).
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import anyio

from ..errors import E_HOST_ERROR, ExportNotFound, MicroviumError, TimeLimitExceeded, VMUnusable, error_name
from . import _host, _marshal, _persist, _pool, _promises
from . import _wasm as _engine
from ._abi import (
    CALL_ARGC_SHIFT,
    CALL_GUARD,
    INT14_BIAS,
    INT14_MAX,
    INT14_MIN,
    INT14_SIGN,
    INT14_TAG,
    MAX_ID,
    SNAPSHOT_HEAP_AT,
)
from ._abi import MEMORY_STATS_FIELDS as _STATS_FIELDS
from ._calls import call_error, fatal_reason
from ._host import AsyncHandler, ImportMap, prepare_imports
from ._persist import Hibernation
from .snapshot import SnapshotLike, check_size, export_ids, load_snapshot, required_version, restore_error
from .snapshot import snapshot_bytes as _snapshot_bytes
from .values import GuestRef


def _heap_size(snapshot: bytes) -> int:
    """Bytes of heap in a snapshot: the heap is its last section."""
    return len(snapshot) - int.from_bytes(snapshot[SNAPSHOT_HEAP_AT:SNAPSHOT_HEAP_AT + 2], "little")


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


@dataclass(frozen=True)
class MemoryStats:
    """Memory use of a VM (the engine's ``mvm_TsMemoryStats``), in bytes."""

    total_size: int
    fragment_count: int
    core_size: int
    import_table_size: int
    global_variables_size: int
    registers_size: int
    stack_height: int
    stack_allocated_capacity: int
    stack_high_water_mark: int
    virtual_heap_used: int
    virtual_heap_high_water_mark: int
    virtual_heap_allocated_capacity: int


class Exports(Mapping[int, Any]):
    """The snapshot's exports by ID; values are resolved on first use."""

    def __init__(self, vm: VM) -> None:
        self._vm: VM | None = vm  # None once the VM is closed (no cycle keeps a closed VM alive)
        self._cache: dict[int, Any] = {}

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
        return iter(export_ids(self._live_vm()._snapshot))

    def __len__(self) -> int:
        return len(export_ids(self._live_vm()._snapshot))

    def __contains__(self, export_id: object) -> bool:
        return export_id in export_ids(self._live_vm()._snapshot)


class VM:
    """A running Microvium VM restored from a snapshot.

    Create with :meth:`VM.restore`.  Use as ``with vm:`` (closes it) or
    ``async with vm:`` (also runs asynchronous host functions in a task group
    and waits for them before closing).
    """

    __slots__ = ("__weakref__", "_arg0", "_async_ops", "_base", "_breakpoint_exception", "_breakpoint_hit",
                 "_closed_reason", "_converting", "_died", "_free", "_gas", "_gc_heap", "_handle_stride", "_handles",
                 "_handles16", "_host_exception", "_host_tasks", "_imports", "_inst", "_layout", "_linked",
                 "_max_args", "_mem16", "_next_token", "_pending", "_revived", "_scratch", "_slow", "_snapshot",
                 "_sp_slots", "_task_group", "_this16", "_time_limit", "_waiters", "async_handler", "exports")

    def __init__(self, instance: _engine.Instance, snapshot: bytes, imports: ImportMap,
                 breakpoint_hit: Callable[[int], Any] | None) -> None:
        self._snapshot = snapshot
        self._imports = imports if isinstance(imports, dict) else dict(imports)
        self._breakpoint_hit = breakpoint_hit
        self._host_exception: tuple[int, BaseException] | None = None
        self._breakpoint_exception: BaseException | None = None
        self._free: list[int] = []
        self._gas: Any = None  # view of the engine's instruction counter, made on first use
        self._linked = 0
        self._pending: dict[int, tuple[Any, list[Any]]] = {}  # promise slot -> (event, [outcome])
        self._converting: set[int] = set()  # ids of containers being copied in (cycle check)
        self._async_ops: dict[int, int] = {}  # token -> handle slot of the guest continuation
        self._host_tasks: dict[int, anyio.CancelScope] = {}  # token -> scope of its task (`async with vm:`)
        self._waiters = 0  # Python tasks awaiting one of this VM's promises
        self._next_token = 1
        # Called as handler(token, import_id, fn, args) when the guest calls an async
        # import; it owns running fn(*args) and later calling resolve_async().  When
        # unset, `async with vm:` runs it in a task group.
        self.async_handler: AsyncHandler | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._sp_slots: list[int] | None = None  # slots taken since the active savepoint
        self._died = False  # a fatal error retired the instance (rollback() can revive the VM)
        self._revived = False
        self._closed_reason = "the VM is closed"
        self.exports: Exports = Exports(self)
        layout = self._layout = instance.layout
        self._arg0 = layout.args >> 1
        self._handle_stride = layout.handle_size >> 1
        self._handles = 0  # set after restore: address of handle slot 0
        self._handles16 = 0
        self._scratch = 0  # set after restore: where strings and snapshots pass through
        self._this16 = layout.this_value >> 1
        self._max_args = layout.max_args
        self._slow = breakpoint_hit is not None
        self._time_limit: float | None = _engine.DEFAULT_TIME_LIMIT
        self._use_instance(instance)

    def _use_instance(self, instance: _engine.Instance) -> None:
        """Run in ``instance`` from now on (all instances share one memory layout)."""
        instance.attach(self)
        instance.time_limit = self._time_limit
        self._inst: _engine.Instance | None = instance
        self._base = instance.base
        self._mem16 = instance.mem16

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
        layout = instance.layout
        state32 = instance.state32
        state32[layout.import_count_word] = len(imports)
        vm = cls(instance, data, imports, breakpoint_hit)
        vm._time_limit = instance.time_limit = time_limit
        try:
            err = instance.restore(len(data), breakpoint_hit is not None)
        except _engine.EngineTrap as trap:
            vm._inst = None
            instance.close()
            error = TimeLimitExceeded if trap.time_limit is not None else VMUnusable
            raise error(f"the engine failed while restoring the snapshot: {trap}",
                        trap.fatal_code or "MVM_E_UNEXPECTED") from None
        if err:
            vm._discard_instance()
            missing = ctypes.c_int32.from_address(instance.base + layout.missing_import).value
            raise restore_error(err, data, layout.engine_version, missing)
        vm._scratch = state32[layout.scratch_word]
        vm._handles = state32[layout.handles_word]
        vm._handles16 = vm._handles >> 1
        vm._gc_heap = _heap_size(data)
        return vm

    @classmethod
    def wake(cls, hibernation: Hibernation, imports: ImportMap | None = None,
             breakpoint_hit: Callable[[int], Any] | None = None,
             time_limit: float | None = _engine.DEFAULT_TIME_LIMIT) -> tuple[VM, dict[Any, Any]]:
        """Restore a :meth:`hibernate` record: the VM, with its pending async calls and kept references.

        Returns the VM and a dict mapping each ``keep`` key to a fresh proxy.
        """
        vm = cls.restore(hibernation.snapshot, imports, breakpoint_hit, time_limit)
        return vm, _persist.wake_refs(vm, hibernation)

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
        self.exports._cache.clear()
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

    def _discard_instance(self) -> None:
        inst = self._inst
        self._inst = None
        self._slow = True
        if inst is not None:
            _pool.give_back(inst)

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

    def _live(self) -> _engine.Instance:
        inst = self._inst
        if inst is None:
            raise self._unusable()
        return inst

    def _unusable(self) -> VMUnusable:
        return VMUnusable(self._closed_reason, "MVM_E_FATAL_ERROR_MUST_KILL_VM")

    # ---- public API ----

    @property
    def engine_version(self) -> str:
        """Version of the Microvium engine running this VM, e.g. ``"8.0.0"``."""
        return self._layout.engine_version

    @property
    def required_engine_version(self) -> str:
        """Engine version the snapshot was compiled for."""
        return required_version(self._snapshot)

    def create_snapshot(self, collect: bool | None = None) -> bytes:
        """Snapshot of globals and heap, restorable here and by the native engine.

        Take it between calls: snapshots never hold the stack or pending jobs.
        The heap is copied as it is, garbage included, so by default
        (``collect=None``) garbage is collected first when it pays: when the
        heap has grown by more than a quarter (and 512 bytes) since the last
        collection.  ``collect=True`` always collects, ``False`` never does.
        """
        inst = self._live()
        if collect:
            self.run_gc(squeeze=True)
        try:
            snapshot = self._snapshot_now(inst)
        except MicroviumError as exc:
            # Program + heap past the 65,535 bytes a snapshot holds: garbage may be what tips it.
            if collect is not None or isinstance(exc, VMUnusable) or exc.code != "MVM_E_SNAPSHOT_TOO_LARGE":
                raise
            self.run_gc(squeeze=True)
            return self._snapshot_now(inst)
        if collect is None and _heap_size(snapshot) > self._gc_heap + max(512, self._gc_heap // 4):
            self.run_gc(squeeze=True)
            snapshot = self._snapshot_now(inst)
        return snapshot

    def _snapshot_now(self, inst: _engine.Instance) -> bytes:
        try:
            size = inst.snapshot()
        except _engine.EngineTrap as trap:
            raise self._die(trap) from None
        if size < 0:
            name = error_name(-size)
            why = (": the program and the heap together exceed the 65,535 bytes a snapshot holds; the VM runs "
                   "on, and can be snapshotted once it holds less" if name == "MVM_E_SNAPSHOT_TOO_LARGE" else "")
            raise MicroviumError(f"cannot create snapshot{why} ({name})", -size)
        return ctypes.string_at(self._base + self._scratch, size)

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

    def run_gc(self, squeeze: bool = False) -> None:
        """Collect garbage; ``squeeze`` also compacts the heap into as few buckets as possible."""
        inst = self._live()
        try:
            inst.gc(squeeze)
        except _engine.EngineTrap as trap:
            raise self._die(trap) from None
        self._gc_heap = self.get_memory_stats().virtual_heap_used

    def get_memory_stats(self) -> MemoryStats:
        """The engine's memory statistics for this VM."""
        inst = self._live()
        inst.memory_stats()
        fields = (ctypes.c_uint32 * _STATS_FIELDS).from_address(self._base + self._layout.stats)
        return MemoryStats(*fields)

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

    def _guard(self, fn: Callable[[], int]) -> int:
        try:
            return fn()
        except _engine.EngineTrap as trap:
            raise self._die(trap) from None

    def _die(self, trap: _engine.EngineTrap) -> VMUnusable:
        reason = fatal_reason(trap)
        self._closed_reason = f"the VM is unusable after a fatal error: {reason}"
        self._discard_instance()
        self._died = True
        error = TimeLimitExceeded if trap.time_limit is not None else VMUnusable
        return error(f"the VM hit a fatal error and cannot be used again: {reason}",
                     trap.fatal_code or "MVM_E_FATAL_ERROR_MUST_KILL_VM")

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
                self._mem16[self._this16] = self._slot_value(this._slot)
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

    def _update_slow(self) -> None:
        # The fast call path skips all bookkeeping unless this flag is set.  A VM revived
        # into another instance stays on the slow path: proxies made before hold fast
        # paths bound to the old instance.
        self._slow = (self._inst is None or bool(self._pending) or self._breakpoint_hit is not None
                      or self._revived)

    def _raise_call_error(self, err: int) -> None:
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

    # ---- bound from the modules of each concept ----

    # Values and handle slots; the public names are the GuestHeap surface of the proxies.
    _hold_value = _marshal.hold_value
    _slot_value = _marshal.slot_value
    _slot_addr = _marshal.slot_addr
    _to_guest = _marshal.to_guest
    _from_guest = _marshal.from_guest
    _result_value = _marshal.result_value
    release = _marshal.release
    get_property = _marshal.get_property
    set_property = _marshal.set_property
    keys = _marshal.keys
    read_bytes = _marshal.read_bytes
    write_bytes = _marshal.write_bytes
    same_value = _marshal.same_value
    to_python = _marshal.to_python
    describe = _marshal.describe

    @property
    def vm(self) -> VM:
        """This VM (the GuestHeap its proxies live in)."""
        return self

    # Promises.
    await_promise = _promises.await_promise
    promise_state = _promises.promise_state
    promise_outcome = _promises.promise_outcome
    _settle_promises = _promises.settle_promises
    _fail_pending = _promises.fail_pending

    # Host functions: engine callbacks (the Host protocol of _wasm) and async host calls.
    on_host_call = _host.on_host_call
    on_breakpoint = _host.on_breakpoint
    resolve_async = _host.resolve_async
    cancel_async = _host.cancel_async

    # Savepoints and hibernation.
    savepoint = _persist.savepoint
    rollback = _persist.rollback
    hibernate = _persist.hibernate


__all__ = ["VM", "Exports", "MemoryStats"]

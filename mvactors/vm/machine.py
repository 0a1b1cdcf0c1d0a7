"""``VM``: one restored Microvium snapshot, the Python counterpart of @microvium/runtime."""

from __future__ import annotations

import ctypes
import functools
import inspect
import math
import os
import struct
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import anyio

from ..errors import (
    E_HOST_ERROR,
    E_INSTRUCTION_COUNT_REACHED,
    E_UNCAUGHT_EXCEPTION,
    E_UNRESOLVED_IMPORT,
    ExportNotFound,
    GasExhausted,
    GuestError,
    HostFunctionError,
    MicroviumError,
    VMUnusable,
    error_name,
)
from ..imports import AsyncImport
from . import _wasm as _engine
from ._abi import (
    CALL_ARGC_SHIFT,
    CALL_GUARD,
    CALL_INFO_ARGC,
    CALL_INFO_ARGS,
    CALL_INFO_ASYNC,
    CALL_INFO_RESULT,
    EXPORT_ENTRY_SIZE,
    FALSE,
    IMPORT_ASYNC,
    INT14_BIAS,
    INT14_MAX,
    INT14_MIN,
    INT14_SIGN,
    INT14_TAG,
    MAX_ALLOCATION,
    MAX_ARRAY_ITEMS,
    MAX_ID,
    MAX_IMPORTS,
    MAX_STRING_BYTES,
    MEMORY_STATS_FIELDS,
    NAN,
    NEG_ZERO,
    NO_OP_FUNC,
    NULL,
    PAGE_SIZE,
    PROMISE_STATE_NAMES,
    SECTION_EXPORT_TABLE,
    SNAPSHOT_HEADER_SIZE,
    SNAPSHOT_MINOR_AT,
    SNAPSHOT_SECTIONS_AT,
    SNAPSHOT_VERSION_AT,
    STR_LENGTH,
    STR_PROTO,
    T_ARRAY,
    T_CLASS,
    T_FUNCTION,
    T_NUMBER,
    T_OBJECT,
    T_STRING,
    T_UINT8_ARRAY,
    TRAPPED_BELOW,
    TRUE,
    UNDEFINED,
    PromiseState,
    import_table_at,
)
from ._marshal import bad_key, bad_type, unsafe_int
from .values import (
    MAX_SAFE_INT,
    GuestArray,
    GuestBytes,
    GuestClass,
    GuestFunction,
    GuestMethod,
    GuestObject,
    GuestPromise,
    GuestRef,
    _Null,
    null,
)

SnapshotLike = bytes | bytearray | memoryview | Sequence[int] | str | os.PathLike[str]
ImportMap = Mapping[int, Callable[..., Any]]
AsyncHandler = Callable[[int, int, Callable[..., Awaitable[Any]], list[Any]], None]


def rejection_value(exc: BaseException) -> dict[str, str]:
    """The guest-side rejection value for a Python exception: ``{name, message}``."""
    return {"name": type(exc).__name__, "message": str(exc)}


async def run_async_import(fn: Callable[..., Awaitable[Any]], args: list[Any]) -> tuple[bool, Any]:
    """Await an async host function; returns (ok, value or rejection value)."""
    try:
        return True, await fn(*args)
    except Exception as exc:
        return False, rejection_value(exc)


class Savepoint:
    """The in-memory state of a VM between calls, for :meth:`VM.rollback` (same VM only)."""

    __slots__ = ("async_ops", "export_ids", "free", "handles", "linked", "next_token", "page_low", "page_top",
                 "state", "top_start", "vm_id")

    def __init__(self, vm_id: int, state: bytes, page_low: bytes, page_top: bytes, top_start: int,
                 handles: bytes, linked: int, free: list[int], async_ops: dict[int, int], next_token: int,
                 export_ids: list[int]) -> None:
        self.vm_id = vm_id
        self.state = state
        self.page_low = page_low
        self.page_top = page_top
        self.top_start = top_start
        self.handles = handles
        self.linked = linked
        self.free = free
        self.async_ops = async_ops
        self.next_token = next_token
        self.export_ids = export_ids


@dataclass(frozen=True)
class Hibernation:
    """A VM at rest: its snapshot plus where the host's references point inside it.

    Locations are heap offsets (>= 0) or ``~value`` for values outside the heap.
    """

    snapshot: bytes
    async_calls: dict[int, int]  # pending async host call token -> location of its continuation
    refs: dict[Any, int]  # caller's key -> location of a kept guest value
    next_token: int = 1

_HANDLE_CHUNK = 32  # handle slots linked into the VM's roots at a time
_PLAIN_RESULTS = frozenset({type(None), bool, int, float, str, bytes, list, tuple, dict})
# Instances of closed VMs, ready for the next restore.  Unbounded: instances
# share one wasmtime Store and cannot be freed individually, so the process
# keeps as many as were ever live at once and reuses them.
_pool: list[_engine.Instance] = []
# Instances closed while their guest code was still running (a host function closed
# its own VM): reusable only once that call has returned.
_busy: list[_engine.Instance] = []


def _take_instance() -> _engine.Instance:
    if _busy:
        for inst in list(_busy):
            if inst.dead or not inst.busy:
                _busy.remove(inst)
                if not inst.dead:
                    _pool.append(inst)
    return _pool.pop() if _pool else _new_instance()


def _release_instance(inst: _engine.Instance) -> None:
    if inst.dead:
        return
    (_busy if inst.busy else _pool).append(inst)


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


def _snapshot_bytes(snapshot: SnapshotLike) -> bytes:
    if isinstance(snapshot, bytes):
        return snapshot
    if isinstance(snapshot, (bytearray, memoryview)):
        return bytes(snapshot)
    if isinstance(snapshot, (str, os.PathLike)):
        path = Path(snapshot)
        if not path.is_file():
            raise FileNotFoundError(f"snapshot file not found: {path}")
        return path.read_bytes()
    if isinstance(snapshot, Sequence):
        try:
            return bytes(list(cast("Sequence[int]", snapshot)))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"a snapshot sequence must hold ints in 0..255 ({exc})") from None
    raise TypeError(f"snapshot must be bytes, a sequence of ints or a path, not {type(snapshot).__name__}")


def _snapshot_version(data: bytes) -> str:
    """The engine version a snapshot was compiled for, from its header."""
    return f"{data[SNAPSHOT_VERSION_AT]}.{data[SNAPSHOT_MINOR_AT]}.0"


def _new_instance() -> _engine.Instance:
    try:
        instance = _engine.Instance()
        if not _W_IMPORT_COUNT:
            _state_words(instance.layout)
        return instance
    except _engine.EngineMissing:
        raise
    except Exception as exc:  # wasmtime reports exhaustion as a generic error
        raise MicroviumError(
            f"cannot create another WebAssembly instance ({exc}); each live VM needs two memory mappings "
            "and the kernel allows vm.max_map_count in total (about 32,000 VMs by default): close or "
            "hibernate idle VMs, or raise the limit", "MVM_E_MALLOC_FAIL") from exc


_W_IMPORT_COUNT = _W_SCRATCH = _W_HANDLES = _W_OUT_SIZE = 0  # state32 indexes, set by _state_words()


def _state_words(layout: _engine.Layout) -> None:
    global _W_IMPORT_COUNT, _W_SCRATCH, _W_HANDLES, _W_OUT_SIZE
    _W_IMPORT_COUNT = layout.word(layout.import_count)
    _W_SCRATCH = layout.word(layout.scratch_ptr)
    _W_HANDLES = layout.word(layout.handles_ptr)
    _W_OUT_SIZE = layout.word(layout.out_size)


def _new_host_func(inst: _engine.Instance, import_id: int) -> int:
    return int(inst.new_host_func(import_id))


_import_tables: dict[tuple[tuple[int, Any], ...], tuple[dict[int, Any], bytes]] = {}


def _prepare_imports(imports: ImportMap | None) -> tuple[dict[int, Any], bytes]:
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


def _fast_function_class(inst: _engine.Instance) -> type[GuestFunction]:
    """A GuestFunction subclass whose ``__call__`` drives ``inst`` directly.

    The trivial call is the product's hot path: this closure does the whole
    call (argument encoding, one raw wasm call, int14 decoding) in one Python
    frame.  It is built once per engine instance and reused by every VM that
    instance hosts; anything unusual falls back to ``VM._call``.
    """
    cached = _function_classes.get(inst.cookie)
    if cached is not None:
        return cached
    call_raw, ctx, faddr, raw, trap_addr, i32, trap_slot = inst.raw_parts()
    layout = inst.layout
    mem16 = inst.mem16
    arg0 = layout.args >> 1
    stride = layout.handle_size >> 1
    max_args = layout.max_args
    # The ABI's constants as closure cells: the body below inlines int14 encoding and decoding.
    guard, argc_shift, trapped_below = CALL_GUARD, CALL_ARGC_SHIFT, TRAPPED_BELOW
    small_min, small_end, tag, sign, bias = INT14_MIN, INT14_MAX + 1, INT14_TAG, INT14_SIGN, INT14_BIAS
    one_arg = guard | (1 << argc_shift)

    def __call__(self: GuestFunction, *args: Any) -> Any:
        vm = self._vm
        if vm._slow:
            return vm._call(self._slot, args)
        n = len(args)
        if n == 1:  # the common case, without the loop
            arg = args[0]
            if type(arg) is int and small_min <= arg < small_end:
                mem16[arg0] = ((arg << 2) | tag) & 0xFFFF
            else:
                mem16[arg0] = vm._to_guest(arg)
            i32[0] = one_arg | self._slot
        else:
            if n > max_args:
                return vm._call(self._slot, args)
            i = arg0
            for arg in args:
                if type(arg) is int and small_min <= arg < small_end:
                    mem16[i] = ((arg << 2) | tag) & 0xFFFF
                else:
                    mem16[i] = vm._to_guest(arg)
                i += stride
            i32[0] = guard | self._slot | (n << argc_shift)
        # The wasmtime error/trap outputs are checked only on the slow path: a
        # trap leaves the guard bit of the parameter in place, which no result equals.
        call_raw(ctx, faddr, raw, 1, trap_addr)
        r = i32[0]
        if r >= 0 and r & tag == tag:
            return (r >> 2) - bias if r & sign else r >> 2
        if r < trapped_below or trap_slot.value:
            raise vm._trapped()
        return vm._call_result(r)

    cls = type("GuestFunction", (GuestFunction,), {"__slots__": (), "__call__": __call__,
                                                   "__module__": GuestFunction.__module__,
                                                   "__doc__": GuestFunction.__doc__})
    _function_classes[inst.cookie] = cls
    return cls


_function_classes: dict[int, type[GuestFunction]] = {}  # instance cookie -> its fast GuestFunction class


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
        return iter(self._live_vm()._export_ids())

    def __len__(self) -> int:
        return len(self._live_vm()._export_ids())

    def __contains__(self, export_id: object) -> bool:
        return export_id in self._live_vm()._export_ids()


class VM:
    """A running Microvium VM restored from a snapshot.

    Create with :meth:`VM.restore`.  Use as ``with vm:`` (closes it) or
    ``async with vm:`` (also runs asynchronous host functions in a task group
    and waits for them before closing).
    """

    __slots__ = (
        "__weakref__",
        "_arg0",
        "_async_ops",
        "_base",
        "_breakpoint_exception",
        "_breakpoint_hit",
        "_closed_reason",
        "_converting",
        "_died",
        "_free",
        "_gas",
        "_handle_stride",
        "_handles",
        "_handles16",
        "_host_exception",
        "_imports",
        "_inst",
        "_layout",
        "_linked",
        "_max_args",
        "_mem16",
        "_next_token",
        "_pending",
        "_revived",
        "_scratch",
        "_slow",
        "_snapshot",
        "_sp_slots",
        "_task_group",
        "_this16",
        "async_handler",
        "exports",
    )

    def __init__(self, instance: _engine.Instance, snapshot: bytes, imports: ImportMap,
                 breakpoint_hit: Callable[[int], Any] | None) -> None:
        self._inst: _engine.Instance | None = instance
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
        base = instance.base
        layout = instance.layout
        self._base = base
        self._layout = layout
        self._mem16 = instance.mem16
        self._arg0 = (layout.args) >> 1
        self._handle_stride = layout.handle_size >> 1
        self._handles = 0  # set after restore: address of handle slot 0
        self._handles16 = 0
        self._scratch = 0  # set after restore: where strings and snapshots pass through
        self._this16 = layout.this_value >> 1
        self._max_args = layout.max_args
        self._slow = breakpoint_hit is not None

    # ---- construction and lifetime ----

    @classmethod
    def restore(cls, snapshot: SnapshotLike, imports: ImportMap | None = None,
                breakpoint_hit: Callable[[int], Any] | None = None) -> VM:
        """Restore ``snapshot`` into a fresh VM without running any guest code.

        ``imports`` maps import IDs (0..0xFFFF) to host functions; ``async def``
        functions (or ones wrapped with :func:`mvactors.async_import`) give the
        guest a promise.  ``breakpoint_hit(address)`` is called at breakpoints.
        """
        data = _snapshot_bytes(snapshot)
        imports, table = _prepare_imports(imports)
        if breakpoint_hit is not None and not callable(breakpoint_hit):
            raise TypeError("breakpoint_hit must be callable")
        if len(data) < SNAPSHOT_HEADER_SIZE:
            raise MicroviumError(f"snapshot is truncated: {len(data)} bytes is smaller than a snapshot header",
                                 "MVM_E_INVALID_BYTECODE")
        instance = _take_instance()
        layout = instance.layout
        if len(data) > layout.rom_size:
            _pool.append(instance)
            raise MicroviumError(f"snapshot is {len(data)} bytes; the engine accepts at most {layout.rom_size}",
                                 "MVM_E_SNAPSHOT_TOO_LARGE")
        vm = cls(instance, data, imports, breakpoint_hit)
        base = instance.base
        ctypes.memmove(base + layout.rom, data, len(data))
        ctypes.memmove(base + layout.rom + import_table_at(len(data)), table, len(table))
        state32 = instance.state32
        state32[_W_IMPORT_COUNT] = len(imports)
        instance.attach(vm)
        try:
            err = instance.restore(len(data), breakpoint_hit is not None)
        except _engine.EngineTrap as trap:
            vm._inst = None
            instance.close()
            raise VMUnusable(f"the engine failed while restoring the snapshot: {trap}",
                             trap.fatal_code or "MVM_E_UNEXPECTED") from None
        if err:
            vm._discard_instance()
            raise vm._restore_error(err, data)
        vm._scratch = state32[_W_SCRATCH]
        vm._handles = state32[_W_HANDLES]
        vm._handles16 = vm._handles >> 1
        return vm

    def _restore_error(self, err: int, data: bytes) -> MicroviumError:
        if err == E_UNRESOLVED_IMPORT:
            missing = ctypes.c_int32.from_address(self._base + self._layout.missing_import).value
            return MicroviumError(f"the snapshot imports host function {missing}, which is not in the import map",
                                  err)
        name = error_name(err)
        hints = {
            "MVM_E_BYTECODE_CRC_FAIL": "the snapshot is corrupted (CRC mismatch)",
            "MVM_E_WRONG_BYTECODE_VERSION": (
                f"the snapshot is for bytecode version {data[SNAPSHOT_VERSION_AT]}, this engine runs version "
                f"{self._layout.engine_version.split('.')[0]}"),
            "MVM_E_REQUIRES_LATER_ENGINE": (
                f"the snapshot needs engine {_snapshot_version(data)}, this is {self._layout.engine_version}"),
            "MVM_E_INVALID_BYTECODE": "the snapshot is truncated or not a Microvium snapshot",
        }
        return MicroviumError(f"cannot restore snapshot: {hints.get(name, name)} ({name})", err)

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
        inst.detach()
        # (A VM being finalized is not running: its host calls hold a reference to it.  And at
        # interpreter exit its instance's memory may be gone already.)
        if not may_be_running:
            if not inst.dead:
                _pool.append(inst)
            return
        if inst.busy:
            self._closed_reason = "the VM was closed by a host function while the guest was running"
        _release_instance(inst)

    def _discard_instance(self) -> None:
        inst = self._inst
        self._inst = None
        self._slow = True
        if inst is not None:
            inst.detach()
            _release_instance(inst)

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
        return _snapshot_version(self._snapshot)

    def create_snapshot(self) -> bytes:
        """Snapshot of globals and heap, restorable here and by the native engine.

        Take it between calls: snapshots never hold the stack or pending jobs.
        """
        inst = self._live()
        size = self._guard(inst.snapshot)
        if size < 0:
            raise MicroviumError(f"cannot create snapshot ({error_name(-size)})", -size)
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
            vm_struct = inst.state32[self._layout.word(self._layout.vm_ptr)]
            counter = self._gas = ctypes.c_int32.from_address(self._base + vm_struct + self._layout.gas_offset)
        return counter

    def run_gc(self, squeeze: bool = False) -> None:
        """Collect garbage; ``squeeze`` also compacts the heap into as few buckets as possible."""
        inst = self._live()
        try:
            inst.gc(squeeze)
        except _engine.EngineTrap as trap:
            raise self._die(trap) from None

    def get_memory_stats(self) -> MemoryStats:
        """The engine's memory statistics for this VM."""
        inst = self._live()
        inst.memory_stats()
        fields = (ctypes.c_uint32 * MEMORY_STATS_FIELDS).from_address(self._base + self._layout.stats)
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

    # ---- handles ----

    def _hold_value(self, value: int) -> int:
        """Root ``value`` in a handle slot; returns the slot."""
        free = self._free
        if free:
            slot = free.pop()
        else:
            slot = self._linked
            if slot >= self._layout.max_handles:
                raise MicroviumError(
                    f"too many live guest values held by Python (limit {self._layout.max_handles}); "
                    "drop references to proxies you no longer need", "MVM_E_INVALID_HANDLE")
            inst = self._live()
            self._linked = inst.link_handles(min(slot + _HANDLE_CHUNK, self._layout.max_handles))
            free.extend(range(self._linked - 1, slot, -1))
        self._mem16[self._handles16 + slot * self._handle_stride] = value
        if self._sp_slots is not None:
            self._sp_slots.append(slot)
        return slot

    def _slot_value(self, slot: int) -> int:
        return int(self._mem16[self._handles16 + slot * self._handle_stride])

    def _slot_addr(self, slot: int) -> int:
        return self._handles + slot * self._layout.handle_size

    def _release_slot(self, slot: int) -> None:
        if self._inst is not None:
            self._mem16[self._handles16 + slot * self._handle_stride] = UNDEFINED
            self._free.append(slot)

    # ---- calls ----

    def _guard(self, fn: Callable[[], int]) -> int:
        try:
            return fn()
        except _engine.EngineTrap as trap:
            raise self._die(trap) from None

    def _die(self, trap: _engine.EngineTrap) -> VMUnusable:
        code = trap.fatal_code
        name = error_name(code)
        if name == "MVM_E_ASYNC_WITHOUT_AWAIT":
            reason = ("an async host function was called from a script compiled without any `await`; "
                      "the guest must await it (MVM_E_ASYNC_WITHOUT_AWAIT)")
        elif name in ("MVM_E_MALLOC_FAIL", "MVM_E_OUT_OF_MEMORY"):  # no room left in the page for the GC to copy into
            reason = (f"the guest ran out of memory ({name}); a VM heap is limited to about 29 KB "
                      "and property names stay interned for the VM's lifetime")
        elif code:
            reason = f"fatal engine error {name}"
        else:
            reason = f"the engine trapped: {trap}"
        self._closed_reason = f"the VM is unusable after a fatal error: {reason}"
        self._discard_instance()
        self._died = True
        return VMUnusable(f"the VM hit a fatal error and cannot be used again: {reason}",
                          code or "MVM_E_FATAL_ERROR_MUST_KILL_VM")

    def _call(self, slot: int, args: tuple[Any, ...], this: GuestRef | None = None) -> Any:
        """Call the guest function held in handle ``slot``."""
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
                self._mem16[self._this16] = this._vm._slot_value(this._slot)
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

    def _trapped(self) -> VMUnusable:
        inst = self._live()
        try:
            inst.fail()
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
        if err == E_UNCAUGHT_EXCEPTION:
            raise GuestError(self._from_guest(self._mem16[self._layout.result >> 1]))
        if err == E_HOST_ERROR and self._inst is None:
            raise self._unusable()
        if err == E_HOST_ERROR and self._host_exception is not None:
            import_id, exc = self._host_exception
            self._host_exception = None
            raise HostFunctionError(import_id, exc) from exc
        if err == E_INSTRUCTION_COUNT_REACHED:
            raise GasExhausted()
        hints = {
            "MVM_E_TYPE_ERROR": "a guest operation was applied to a value of the wrong type",
            "MVM_E_TARGET_NOT_CALLABLE": "the value called is not a function",
            "MVM_E_STACK_OVERFLOW": "the guest stack overflowed (recursion too deep?)",
        }
        name = error_name(err)
        raise MicroviumError(f"{hints.get(name, 'the guest call failed')} ({name})", err)

    def _resolve_export(self, export_id: int) -> Any:
        if not isinstance(export_id, int) or not 0 <= export_id <= MAX_ID:
            raise ExportNotFound(f"export IDs are ints in 0..0xFFFF, got {export_id!r}", "MVM_E_UNRESOLVED_EXPORT")
        inst = self._live()
        r = self._guard(lambda: inst.export(export_id))
        if r < 0:
            ids = sorted(self._export_ids())
            raise ExportNotFound(f"the snapshot has no export {export_id} (exports: {ids})", -r)
        return self._from_guest(r)

    def _export_ids(self) -> list[int]:
        # The export table's section runs to the next section's offset; entries are (id, value).
        data = self._snapshot
        at = SNAPSHOT_SECTIONS_AT + 2 * SECTION_EXPORT_TABLE
        start = int.from_bytes(data[at:at + 2], "little")
        end = int.from_bytes(data[at + 2:at + 4], "little")
        return [int.from_bytes(data[i:i + 2], "little") for i in range(start, end, EXPORT_ENTRY_SIZE)]

    # ---- host callbacks (called by the engine while the guest runs) ----

    def on_host_call(self, import_id: int) -> int:
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
            if self._inst is None:  # the host function closed this VM: unwind the guest
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
        hook = self._breakpoint_hit
        if hook is None:
            return
        try:
            hook(address)
        except BaseException as exc:
            if self._breakpoint_exception is None:
                self._breakpoint_exception = exc

    def _start_async(self, import_id: int, fn: Callable[..., Any], args: list[Any]) -> None:
        token = self._next_token
        self._next_token += 1
        self._async_ops[token] = self._hold_value(self._mem16[self._layout.callback >> 1])
        fn = fn.fn if isinstance(fn, AsyncImport) else fn
        handler = self.async_handler
        if handler is not None:
            handler(token, import_id, fn, args)
            return
        if self._task_group is None:
            self._release_slot(self._async_ops.pop(token))
            raise MicroviumError(
                f"the guest called async host function {import_id} outside `async with vm:`; "
                "enter the VM with `async with` so host async work has a task scope", "MVM_E_ASYNC_START_ERROR")

        async def run() -> None:
            ok, value = await run_async_import(fn, args)
            if self._inst is not None:
                try:
                    self.resolve_async(token, ok, value)
                except MicroviumError as exc:
                    self._fail_pending(exc)

        self._task_group.start_soon(run)

    @property
    def pending_async_calls(self) -> list[int]:
        """Tokens of asynchronous host calls the guest is still waiting on."""
        return list(self._async_ops)

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
            if self._slot_value(slot) != NO_OP_FUNC:  # the guest ignores the result
                self._call_raw_slot(slot, 2)
        finally:
            self._release_slot(slot)
            if self._pending:
                self._settle_promises()

    def cancel_async(self, token: int) -> None:
        """Forget asynchronous host call ``token``: its guest continuation never runs."""
        slot = self._async_ops.pop(token, None)
        if slot is not None:
            self._release_slot(slot)

    # ---- savepoints ----

    def savepoint(self) -> Savepoint:
        """Capture the VM's state between calls so :meth:`rollback` can return to it.

        Copies only the parts of the VM's memory page in use, so it is cheap
        for small VMs (a few KB).  One savepoint is active at a time: taking
        another replaces it.
        """
        if self._inst is None:
            raise self._unusable()
        layout = self._layout
        base = self._base
        extent = ctypes.c_uint32 * 2  # low_end, top_start: adjacent fields
        low_end, top_start = extent.from_address(base + layout.low_end)
        page = base + layout.page
        string_at = ctypes.string_at
        self._sp_slots = []
        return Savepoint(
            id(self),
            string_at(base + layout.state, layout.state_size),
            string_at(page, low_end),
            string_at(page + top_start, PAGE_SIZE - top_start) if top_start < PAGE_SIZE else b"",
            top_start,
            string_at(base + self._handles, self._linked * layout.handle_size),
            self._linked,
            self._free.copy(),
            self._async_ops.copy(),
            self._next_token,
            list(self.exports._cache),
        )

    def rollback(self, savepoint: Savepoint) -> None:
        """Return the VM to ``savepoint``: every effect of the calls since then is undone.

        Works after a fatal engine error too (out of memory, say): the VM comes
        back in a fresh WebAssembly instance.  Guest values obtained since the
        savepoint read as ``undefined`` afterwards; asynchronous host calls
        started since then are forgotten.
        """
        if savepoint.vm_id != id(self) or self._sp_slots is None:
            raise MicroviumError("rollback() needs the VM's own, latest savepoint", "MVM_E_INVALID_ARGUMENTS")
        inst = self._inst if self._inst is not None or not self._died else self._revive()
        if inst is None:
            raise self._unusable()
        layout = self._layout
        base = self._base
        page = base + layout.page
        taken = set(self._sp_slots)
        now_free = set(self._free)
        linked_now = self._linked
        ctypes.memmove(base + layout.state, savepoint.state, len(savepoint.state))
        # The state came from this VM's instance at savepoint time, which may not be this one.
        ctypes.c_uint32.from_address(base + layout.cookie).value = inst.cookie
        ctypes.memmove(page, savepoint.page_low, len(savepoint.page_low))
        ctypes.memmove(page + savepoint.top_start, savepoint.page_top, len(savepoint.page_top))
        ctypes.memmove(base + self._handles, savepoint.handles, len(savepoint.handles))
        if linked_now > savepoint.linked:
            # Handles linked since the savepoint are no longer in the VM's root list.
            inst.link_handles(linked_now)
        # Slots taken since the savepoint may still be held by proxies: empty them and
        # keep them out of the free list until those proxies release them.
        for slot in taken:
            self._mem16[self._handles16 + slot * self._handle_stride] = UNDEFINED
        self._free = [slot for slot in savepoint.free if slot not in taken or slot in now_free]
        self._free.extend(slot for slot in range(savepoint.linked, linked_now) if slot in now_free)
        self._linked = linked_now
        self._async_ops = dict(savepoint.async_ops)
        self._next_token = savepoint.next_token
        cache = self.exports._cache
        for export_id in set(cache).difference(savepoint.export_ids):
            del cache[export_id]
        self._sp_slots = []
        self._host_exception = None
        self._breakpoint_exception = None

    def _revive(self) -> _engine.Instance:
        """A fresh instance with this VM's snapshot and import table, for rollback() after a fatal error.

        Instances share one memory layout, so the savepoint's bytes mean the same there.
        """
        instance = _take_instance()
        base = instance.base
        layout = instance.layout
        data = self._snapshot
        _, table = _prepare_imports(self._imports)
        ctypes.memmove(base + layout.rom, data, len(data))
        ctypes.memmove(base + layout.rom + import_table_at(len(data)), table, len(table))
        instance.attach(self)
        self._inst = instance
        self._base = base
        self._mem16 = instance.mem16
        self._died = False
        self._closed_reason = "the VM is closed"
        self.exports._cache.clear()  # their fast call paths are bound to the old instance
        self._gas = None
        self._revived = self._slow = True
        return instance

    # ---- hibernation ----

    def hibernate(self, keep: Mapping[Any, GuestRef] | None = None, collect: bool = True) -> Hibernation:
        """Collect garbage, snapshot, and record where the host's references point.

        The snapshot keeps the heap verbatim, so pending asynchronous host
        calls and the guest values in ``keep`` survive in it even when no guest
        global reaches them; :meth:`wake` turns the recorded offsets back into
        live references.  Call between guest calls; the VM stays usable.
        ``collect=False`` skips the garbage collection (a cheaper record, e.g.
        for rolling a turn back).
        """
        inst = self._live()
        keep = dict(keep or {})
        for ref in keep.values():
            if not isinstance(ref, GuestRef) or ref._vm is not self:
                raise TypeError("hibernate() keeps only guest values of this VM")
        if collect:
            self.run_gc(squeeze=True)
        snapshot = self.create_snapshot()

        def locate(slot: int) -> int:
            value = self._slot_value(slot)
            offset = int(inst.heap_offset(value))
            return offset if offset >= 0 else ~value  # non-heap values (ROM, well-known) as-is

        return Hibernation(
            snapshot=snapshot,
            async_calls={token: locate(slot) for token, slot in self._async_ops.items()},
            refs={key: locate(ref._slot) for key, ref in keep.items()},
            next_token=self._next_token,
        )

    @classmethod
    def wake(cls, hibernation: Hibernation, imports: ImportMap | None = None,
             breakpoint_hit: Callable[[int], Any] | None = None) -> tuple[VM, dict[Any, Any]]:
        """Restore a :meth:`hibernate` record: the VM, with its pending async calls and kept references.

        Returns the VM and a dict mapping each ``keep`` key to a fresh proxy.
        """
        vm = cls.restore(hibernation.snapshot, imports, breakpoint_hit)
        inst = vm._live()

        def revive(location: int) -> int:
            if location < 0:
                return ~location
            value = int(inst.value_at_offset(location))
            if value < 0:
                vm.close()
                raise MicroviumError(f"hibernation record points outside the snapshot heap ({location})",
                                     "MVM_E_INVALID_ADDRESS")
            return value

        # Root everything before anything can run the GC and move it.
        for token, location in hibernation.async_calls.items():
            vm._async_ops[token] = vm._hold_value(revive(location))
        vm._next_token = hibernation.next_token
        refs = {key: vm._from_guest(revive(location), promise_ok=True)
                for key, location in hibernation.refs.items()}
        return vm, refs

    def _call_raw_slot(self, slot: int, argc: int) -> None:
        inst = self._live()
        try:
            r = inst.call(CALL_GUARD | slot | (argc << CALL_ARGC_SHIFT))
        except _engine.EngineTrap as trap:
            raise self._die(trap) from None
        if r < 0:
            self._raise_call_error(-r)

    # ---- promises ----

    async def _await_promise(self, promise: GuestPromise) -> Any:
        slot = promise._slot
        inst = self._live()
        state = inst.promise_state(self._slot_value(slot))
        if state == PromiseState.FULFILLED:
            return self._from_guest(self._mem16[self._layout.result >> 1])
        if state == PromiseState.REJECTED:
            raise GuestError(self._from_guest(self._mem16[self._layout.result >> 1]))
        entry = self._pending.get(slot)
        if entry is None:
            entry = self._pending[slot] = (anyio.Event(), [])
            self._slow = True
        event, outcome = entry
        await event.wait()
        result = outcome[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def _settle_promises(self) -> None:
        inst = self._inst
        if inst is None:
            return
        for slot, (event, outcome) in list(self._pending.items()):
            state = inst.promise_state(self._slot_value(slot))
            if state == PromiseState.PENDING:
                continue
            del self._pending[slot]
            value = self._from_guest(self._mem16[self._layout.result >> 1])
            outcome.append(value if state == PromiseState.FULFILLED else GuestError(value))
            event.set()
        self._update_slow()

    def _fail_pending(self, exc: BaseException) -> None:
        for event, outcome in self._pending.values():
            outcome.append(exc)
            event.set()
        self._pending.clear()
        self._update_slow()

    def promise_outcome(self, promise: GuestPromise) -> tuple[str, Any]:
        """``(state, value)`` of a guest promise without awaiting it.

        ``state`` is ``"pending"`` (value None), ``"fulfilled"`` or ``"rejected"``.
        """
        if promise._vm is not self:
            raise TypeError("the promise belongs to another VM")
        state = self._live().promise_state(self._slot_value(promise._slot))
        if state in (PromiseState.FULFILLED, PromiseState.REJECTED):
            return PROMISE_STATE_NAMES[state], self._from_guest(self._mem16[self._layout.result >> 1])
        return PROMISE_STATE_NAMES[PromiseState.PENDING], None

    def _promise_state_name(self, slot: int) -> str:
        state = self._live().promise_state(self._slot_value(slot))
        return PROMISE_STATE_NAMES.get(state, PROMISE_STATE_NAMES[PromiseState.PENDING])

    # ---- marshalling: Python -> guest ----

    def _to_guest(self, obj: Any) -> int:
        """Convert ``obj`` to a guest value.

        The result is not rooted: the caller stores it before the next
        allocation in the VM.
        """
        if obj is None:
            return UNDEFINED
        t = type(obj)
        if t is bool:
            return TRUE if obj else FALSE
        if t is int or (isinstance(obj, int) and not isinstance(obj, bool)):
            number = int(obj)
            if INT14_MIN <= number <= INT14_MAX:
                return ((number << 2) | INT14_TAG) & 0xFFFF
            if -MAX_SAFE_INT <= number <= MAX_SAFE_INT:
                return self._new(lambda inst: inst.new_number(float(number)))
            raise unsafe_int(number)
        if t is float or isinstance(obj, float):
            return self._new(lambda inst: inst.new_number(float(obj)))
        if t is str or isinstance(obj, str):
            if obj == "length":  # the engine's own value for it; a fresh copy would leak an intern cell per use
                return STR_LENGTH
            if obj == "__proto__":
                return STR_PROTO
            return self._new_from_scratch(str(obj).encode("utf-8", "surrogatepass"), "string")
        if isinstance(obj, (bytes, bytearray, memoryview)):
            return self._new_from_scratch(bytes(obj), "bytes")
        if obj is null or t is _Null:
            return NULL
        if isinstance(obj, GuestRef):
            if obj._vm is not self:
                raise TypeError("a guest value from another VM cannot be passed to this VM; use to_python() to copy it")
            if self._inst is None:
                self._live()
            return self._slot_value(obj._slot)
        if isinstance(obj, (list, tuple)):
            return self._new_array(obj)
        if isinstance(obj, dict):
            return self._new_object(obj)
        if callable(obj):
            return self._host_function_value(obj)
        raise bad_type(obj)

    def _new(self, make: Callable[[_engine.Instance], int]) -> int:
        inst = self._live()
        try:
            return int(make(inst)) & 0xFFFF
        except _engine.EngineTrap as trap:
            raise self._die(trap) from None

    def _new_from_scratch(self, data: bytes, kind: str) -> int:
        inst = self._live()
        limit = MAX_STRING_BYTES if kind == "string" else MAX_ALLOCATION
        if len(data) > limit:
            raise MicroviumError(
                f"a {kind} value of {len(data)} bytes is too large for the VM (at most {limit} bytes: "
                f"Microvium allocations hold at most {MAX_ALLOCATION} bytes)", "MVM_E_ALLOCATION_TOO_LARGE")
        if len(data) > self._layout.scratch_size:
            raise MicroviumError(f"{kind} of {len(data)} bytes does not fit in a VM", "MVM_E_ALLOCATION_TOO_LARGE")
        ctypes.memmove(self._base + self._scratch, data, len(data))
        make = inst.new_string if kind == "string" else inst.new_bytes
        return self._new(lambda _inst: make(len(data)))

    def _enter_container(self, container: object) -> None:
        if id(container) in self._converting:
            raise TypeError(f"cannot pass a self-referencing {type(container).__name__} to the VM "
                            "(values are copied in, and a cycle never ends)")
        self._converting.add(id(container))

    def _new_array(self, items: Sequence[Any]) -> int:
        if len(items) > MAX_ARRAY_ITEMS:
            raise MicroviumError(
                f"a list of {len(items)} items is too long for a Microvium array (at most {MAX_ARRAY_ITEMS}: "
                f"one allocation holds at most {MAX_ALLOCATION} bytes)", "MVM_E_ARRAY_TOO_LONG")
        self._enter_container(items)
        array = self._hold_value(self._new(lambda inst: inst.new_array(len(items))))
        try:
            for i, item in enumerate(items):
                self._set_slot_property(array, i, item)
            return self._slot_value(array)
        finally:
            self._release_slot(array)
            self._converting.discard(id(items))

    def _new_object(self, mapping: dict[Any, Any]) -> int:
        for key in mapping:
            if not isinstance(key, str):
                raise bad_key(key)
            if key == "__proto__":
                raise TypeError("a dict key '__proto__' would set the guest object's prototype; rename the key")
            if key.isascii() and key.isdigit():
                raise TypeError(f"dict key {key!r} looks like an array index, which Microvium objects do not "
                                "support as a property name; use a list or a non-numeric key")
        self._enter_container(mapping)
        obj = self._hold_value(self._new(lambda inst: inst.new_object()))
        try:
            for key, item in mapping.items():
                self._set_slot_property(obj, key, item)
            return self._slot_value(obj)
        finally:
            self._release_slot(obj)
            self._converting.discard(id(mapping))

    def _host_function_value(self, fn: Callable[..., Any]) -> int:
        for import_id, candidate in self._imports.items():
            if candidate is fn:
                value = self._new(functools.partial(_new_host_func, import_id=import_id))
                if value == 0xFFFF:  # -1 as a 16-bit value: the snapshot does not import it
                    raise TypeError(
                        f"host function for import {import_id} cannot be passed to the VM: "
                        "the snapshot does not import that ID")
                return value
        raise TypeError(f"host functions cannot be passed to the VM (got {type(fn).__name__}); "
                        "only functions from the import map that the snapshot imports can")

    # ---- marshalling: guest -> Python ----

    def _from_guest(self, value: int, promise_ok: bool = False, this: GuestRef | None = None) -> Any:
        if value & INT14_TAG == INT14_TAG:
            return (value >> 2) - INT14_BIAS if value & INT14_SIGN else value >> 2
        if value == UNDEFINED:
            return None
        if value == NULL:
            return null
        if value == TRUE:
            return True
        if value == FALSE:
            return False
        if value == NAN:
            return math.nan
        if value == NEG_ZERO:
            return -0.0
        inst = self._live()
        kind = inst.type_of(value)
        if kind == T_NUMBER:
            x = inst.to_number(value)
            if x.is_integer() and -MAX_SAFE_INT <= x <= MAX_SAFE_INT:
                return int(x)
            return x
        if kind == T_STRING:
            ptr = inst.string(value)
            size = inst.state32[_W_OUT_SIZE]
            return ctypes.string_at(self._base + ptr, size).decode("utf-8", "surrogatepass")
        if kind == T_FUNCTION:
            host_id = inst.host_func_id(value)
            if host_id >= 0 and host_id in self._imports:
                return self._imports[host_id]
            if this is None:
                return _fast_function_class(inst)(self, self._hold_value(value))
            return GuestMethod(self, self._hold_value(value), this)
        if kind == T_OBJECT:
            if promise_ok and inst.promise_state(value):
                return GuestPromise(self, self._hold_value(value))
            return GuestObject(self, self._hold_value(value))
        if kind == T_ARRAY:
            return GuestArray(self, self._hold_value(value))
        if kind == T_CLASS:
            return GuestClass(self, self._hold_value(value))
        if kind == T_UINT8_ARRAY:
            return GuestBytes(self, self._hold_value(value))
        return GuestObject(self, self._hold_value(value))

    # ---- property access for proxies ----

    def _key_value(self, key: str | int) -> int:
        if isinstance(key, bool) or not isinstance(key, (str, int)):
            raise TypeError(f"guest property keys must be str or int, not {type(key).__name__}")
        if isinstance(key, int) and not 0 <= key <= INT14_MAX:
            raise IndexError(f"guest array index {key} out of range")
        return self._to_guest(key)

    def _get_property(self, slot: int, key: str | int, bind: bool) -> Any:
        inst = self._live()
        key_slot = self._hold_value(self._key_value(key))
        try:
            r = self._guard(lambda: inst.get(self._slot_addr(slot), self._slot_addr(key_slot)))
        finally:
            self._release_slot(key_slot)
        if r < 0:
            self._raise_call_error(-r)
        if not bind:
            return self._from_guest(r)
        this = None
        if r & INT14_TAG != INT14_TAG and inst.type_of(r) == T_FUNCTION:
            this = self._proxy_for_slot(slot)
        return self._from_guest(r, this=this)

    def _proxy_for_slot(self, slot: int) -> GuestRef:
        # A fresh handle on the same object, so the bound method keeps it alive.
        return GuestObject(self, self._hold_value(self._slot_value(slot)))

    def _set_property(self, slot: int, key: str | int, value: Any) -> None:
        self._live()
        self._set_slot_property(slot, key, value)

    def _set_slot_property(self, slot: int, key: str | int, value: Any) -> None:
        inst = self._live()
        key_slot = self._hold_value(self._key_value(key))
        value_slot = self._hold_value(UNDEFINED)
        try:
            self._mem16[self._handles16 + value_slot * self._handle_stride] = self._to_guest(value)
            err = self._guard(lambda: inst.set(self._slot_addr(slot), self._slot_addr(key_slot),
                                               self._slot_addr(value_slot)))
        finally:
            self._release_slot(key_slot)
            self._release_slot(value_slot)
        if err < 0:
            self._raise_call_error(-err)

    def _keys(self, slot: int) -> list[str]:
        inst = self._live()
        r = self._guard(lambda: inst.keys(self._slot_addr(slot)))
        if r < 0:
            self._raise_call_error(-r)
        keys = self._from_guest(r)
        return [str(k) for k in keys] if isinstance(keys, GuestArray) else []

    def _read_bytes(self, slot: int) -> bytes:
        inst = self._live()
        ptr = inst.bytes(self._slot_value(slot))
        size = inst.state32[_W_OUT_SIZE]
        return ctypes.string_at(self._base + ptr, size)

    def _write_bytes(self, slot: int, data: bytes, offset: int) -> None:
        inst = self._live()
        ptr = inst.bytes(self._slot_value(slot))
        size = inst.state32[_W_OUT_SIZE]
        if offset < 0 or offset + len(data) > size:
            raise IndexError(f"writing {len(data)} bytes at offset {offset} overflows a Uint8Array of {size}")
        ctypes.memmove(self._base + ptr + offset, data, len(data))

    def _same_value(self, a: int, b: int) -> bool:
        return bool(self._live().equal(self._slot_value(a), self._slot_value(b)))

    def _deep_copy(self, slot: int, depth: int = 0) -> Any:
        if depth > 64:
            raise ValueError("guest value nests deeper than 64 levels (cyclic?); cannot copy it to Python")
        proxy = self._from_guest(self._slot_value(slot))
        return self._copy_proxy(proxy, depth)

    def _copy_proxy(self, value: Any, depth: int) -> Any:
        if isinstance(value, GuestBytes):
            return bytes(value)
        if isinstance(value, GuestArray):
            return [self._copy_proxy(item, depth + 1) for item in value]
        if isinstance(value, GuestFunction):
            return value
        if isinstance(value, GuestObject):
            if depth > 64:
                raise ValueError("guest value nests deeper than 64 levels (cyclic?); cannot copy it to Python")
            return {k: self._copy_proxy(self._get_property(value._slot, k, bind=False), depth + 1)
                    for k in value.keys()}  # noqa: SIM118 - a proxy, not a dict
        return value

    def _repr_value(self, slot: int) -> str:
        value = self._from_guest(self._slot_value(slot))
        if isinstance(value, (GuestFunction,)):
            return "function"
        try:
            return repr(self._copy_proxy(value, 60))
        except ValueError:
            return "..."


__all__ = ["VM", "Hibernation", "Savepoint", "MemoryStats", "rejection_value", "run_async_import"]

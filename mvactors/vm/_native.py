"""A ctypes driver for the native reference build of the engine (``libmvx_native.so``).

This is a test and benchmark utility, not the mvactors API: the fidelity tests
compare the WebAssembly VM against it call by call, and ``bench/vm.py`` uses it
as the speed reference for guest code.  The same ``glue.c`` and port header are
compiled with gcc, so differences between the two can only come from the
compiler, the wasm libc shims (fmod, pow, ``%.15g``) or the Python host.

Limits, by design:

* **One live VM per process.**  The native glue keeps its VM, RAM page, ROM
  and handles in C statics, so a second restore would clobber the first;
  ``NativeVM.restore`` refuses while another NativeVM is open.
* Values crossing the boundary are ``None`` (undefined), ``mvactors.null``,
  ``bool``, ``int``, ``float``, ``str`` and ``bytes`` (Uint8Array) in both
  directions, converted as ``mvactors.VM`` converts them;
  results may also be arrays (``list``) and plain objects (``dict``), copied
  out recursively.  Functions and classes cannot be returned.
* Async host imports are not supported (the import is registered as sync).
* A Microvium *fatal* error (e.g. out of memory) calls ``abort()`` in the
  native glue and ends the process; the wasm build traps instead.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self

from ..errors import (
    E_HOST_ERROR,
    MicroviumError,
    VMUnusable,
)
from . import _abi
from ._abi import (
    FALSE,
    INT14_BIAS,
    INT14_MAX,
    INT14_MIN,
    INT14_SIGN,
    INT14_TAG,
    NULL,
    STR_LENGTH,
    T_ARRAY,
    T_BOOLEAN,
    T_NULL,
    T_NUMBER,
    T_OBJECT,
    T_STRING,
    T_UINT8_ARRAY,
    T_UNDEFINED,
    TRUE,
    TYPE_NAMES,
    UNDEFINED,
    import_table_at,
)
from ._calls import call_error
from ._wasm import EngineMissing, Layout, native_library_path
from .snapshot import restore_error
from .values import MAX_SAFE_INT, NullType, null

NativeValue = None | NullType | bool | int | float | str | bytes | list[Any] | dict[str, Any]
"""What ``NativeVM.call`` returns."""

HostFunction = Callable[..., Any]

# Handles the driver uses to keep values alive while it copies nested results
# out: one per nesting level plus one for the key being read.
_HANDLE_DEPTH = 64
_FUNC_HANDLE = _HANDLE_DEPTH  # holds the function being called

_HOST_CALL = ctypes.CFUNCTYPE(
    ctypes.c_int32, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_size_t, ctypes.c_uint32, ctypes.c_size_t, ctypes.c_uint32
)
_HOST_BREAKPOINT = ctypes.CFUNCTYPE(None, ctypes.c_uint32, ctypes.c_uint32)


class _Library:
    """The loaded shared object, its function prototypes and the glue's static addresses."""

    def __init__(self, path: Path) -> None:
        lib = ctypes.CDLL(str(path))
        self.lib = lib

        def fn(name: str, restype: Any, *argtypes: Any) -> Any:
            f = getattr(lib, name)
            f.restype = restype
            f.argtypes = list(argtypes)
            return f

        i32, u32, size, dbl = ctypes.c_int32, ctypes.c_uint32, ctypes.c_size_t, ctypes.c_double
        self.layout = fn("mvx_layout", size, i32)
        self.restore = fn("mvx_restore", i32, u32, i32)
        self.free_vm = fn("mvx_free_vm", None)
        self.link_handles = fn("mvx_link_handles", i32, u32)
        self.call = fn("mvx_call", i32, u32)
        self.export = fn("mvx_export", i32, u32)
        self.get = fn("mvx_get", i32, size, size)
        self.keys = fn("mvx_keys", i32, size)
        self.new_number = fn("mvx_new_number", i32, dbl)
        self.new_string = fn("mvx_new_string", i32, u32)
        self.new_bytes = fn("mvx_new_bytes", i32, u32)
        self.type_of = fn("mvx_type_of", i32, i32)
        self.to_number = fn("mvx_to_number", dbl, i32)
        self.string = fn("mvx_string", size, i32)
        self.bytes = fn("mvx_bytes", size, i32)
        self.snapshot = fn("mvx_snapshot", i32)
        self.set_gas = fn("mvx_set_gas", None, i32)
        self.gc = fn("mvx_gc", None, i32)
        self.memory_stats = fn("mvx_memory_stats", None)
        self.get_gas = fn("mvx_get_gas", i32)
        self.set_host = fn("mvx_set_host", None, _HOST_CALL, _HOST_BREAKPOINT)

        layout = Layout(self.layout)  # the glue's ABI, read as for the wasm build (addresses are absolute here)
        # Handle slots and the scratch area move with each restore (they follow the
        # snapshot and import table); read their pointers after restoring.
        self.handles_ptr: int = layout.handles_ptr
        self.rom: int = layout.rom
        self.scratch_ptr: int = layout.scratch_ptr
        self.handles = 0
        self.scratch = 0
        self.args: int = layout.args
        self.result: int = layout.result
        self.out_size: int = layout.out_size
        self.import_count: int = layout.import_count
        self.missing_import: int = layout.missing_import
        self.stats: int = layout.stats
        self.handle_size: int = layout.handle_size
        self.max_handles: int = layout.max_handles
        self.max_args: int = layout.max_args
        self.max_imports: int = layout.max_imports
        self.scratch_size: int = layout.scratch_size
        self.rom_size: int = layout.rom_size
        self.engine_version = layout.engine_version
        # The callbacks must outlive every call into the library: keep them here.
        self.host_call = _HOST_CALL(_dispatch_host_call)
        self.host_breakpoint = _HOST_BREAKPOINT(_dispatch_breakpoint)
        self.set_host(self.host_call, self.host_breakpoint)


_library: _Library | None = None


def _load() -> _Library:
    global _library
    if _library is None:
        _library = _Library(native_library_path())
    return _library


def native_available() -> bool:
    """Whether the native reference build exists (tests skip without it)."""
    try:
        native_library_path()
    except EngineMissing:
        return False
    return True


def _dispatch_host_call(cookie: int, import_id: int, args: int, argc: int, result: int, is_async: int) -> int:
    # Exceptions must not escape a ctypes callback (they would only be
    # printed): the VM keeps the exception and re-raises it after the call.
    vm = NativeVM._live
    if vm is None:  # pragma: no cover - the glue only calls back while a VM runs
        return E_HOST_ERROR
    try:
        return vm._host_call(import_id, args, argc, result, bool(is_async))
    except BaseException as exc:  # raised by NativeVM.call as the VM raises it
        vm._host_exception = (import_id, exc)
        return E_HOST_ERROR


def _dispatch_breakpoint(cookie: int, address: int) -> None:
    # Breakpoints are never enabled by this driver (restore passes 0).
    return None


class NativeVM:
    """The Microvium VM of the native reference build, driven through ctypes.

    Create one with :meth:`restore`; only one may be open per process (see the
    module docstring).  Use it as a context manager or call :meth:`close`.
    """

    _live: ClassVar[NativeVM | None] = None

    def __init__(self, lib: _Library, imports: Mapping[int, HostFunction]) -> None:
        # Use NativeVM.restore(); the constructor only wires state.
        self._lib = lib
        self._imports = dict(imports)
        self._host_exception: tuple[int, BaseException] | None = None
        self._closed = False

    @classmethod
    def restore(cls, snapshot: bytes, imports: Mapping[int, HostFunction] | None = None) -> NativeVM:
        """Restore ``snapshot`` with host functions ``imports`` (import id -> callable).

        Raises MicroviumError if the engine rejects the snapshot or it imports
        an ID missing from ``imports``, RuntimeError if another NativeVM is open.
        """
        if cls._live is not None:
            raise RuntimeError("the native engine holds one VM per process; close the open NativeVM first")
        lib = _load()
        imports = dict(imports or {})
        data = bytes(snapshot)
        if len(data) > lib.rom_size:
            raise MicroviumError(f"snapshot of {len(data)} bytes exceeds the engine's ROM area ({lib.rom_size})",
                                 "MVM_E_SNAPSHOT_TOO_LARGE")
        if len(imports) > lib.max_imports:
            raise MicroviumError(f"at most {lib.max_imports} imports are supported", "MVM_E_INVALID_ARGUMENTS")
        if any(not 0 <= i <= _abi.MAX_ID for i in imports):
            raise MicroviumError("import ids are 16-bit unsigned integers", "MVM_E_INVALID_ARGUMENTS")
        ctypes.memmove(lib.rom, data, len(data))
        table = sorted(imports)
        # The glue reads the import table 8-byte aligned right after the snapshot.
        slots = (ctypes.c_uint32 * lib.max_imports).from_address(lib.rom + import_table_at(len(data)))
        for i, import_id in enumerate(table):
            slots[i] = import_id
        ctypes.c_uint32.from_address(lib.import_count).value = len(table)
        err = lib.restore(len(data), 0)
        if err:
            missing = ctypes.c_int32.from_address(lib.missing_import).value
            raise restore_error(err, data, lib.engine_version, missing)
        lib.handles = ctypes.c_void_p.from_address(lib.handles_ptr).value or 0
        lib.scratch = ctypes.c_void_p.from_address(lib.scratch_ptr).value or 0
        lib.link_handles(_FUNC_HANDLE + 1)
        vm = cls(lib, imports)
        cls._live = vm
        return vm

    # ---- calls ----

    def call(self, export_id: int, *args: Any) -> NativeValue:
        """Call the guest function exported as ``export_id`` and return its result.

        Raises what ``mvactors.VM`` raises: GuestError if the guest throws,
        GasExhausted when the budget from :meth:`set_gas` runs out,
        HostFunctionError if a host function raised, and MicroviumError for
        other engine errors.
        """
        lib = self._check()
        if len(args) > lib.max_args:
            raise MicroviumError(f"at most {lib.max_args} arguments are supported", "MVM_E_TOO_MANY_ARGUMENTS")
        # Each argument goes into its handle as soon as it exists: building the
        # next one may run the GC, which moves objects and updates only roots.
        for i, arg in enumerate(args):
            self._encode(arg, lib.args + i * lib.handle_size)
        # The export is resolved after the arguments for the same reason.
        value = lib.export(export_id)
        if value < 0:
            raise MicroviumError(f"the snapshot has no export {export_id}", -value)
        ctypes.c_uint16.from_address(self._handle(_FUNC_HANDLE)).value = value
        self._host_exception = None
        value = lib.call(_FUNC_HANDLE | len(args) << _abi.CALL_ARGC_SHIFT)
        if value < 0:
            self._raise(-value)
        return self._decode(value, 0)

    def _raise(self, err: int) -> None:
        host_exception, self._host_exception = self._host_exception, None
        lib = self._lib
        raise call_error(err, lambda: self._decode(ctypes.c_uint16.from_address(lib.result).value, 0), host_exception)

    def _host_call(self, import_id: int, args: int, argc: int, result: int, is_async: bool) -> int:
        if is_async:
            raise MicroviumError("the native driver does not support async host functions", "MVM_E_NOT_IMPLEMENTED")
        fn = self._imports[import_id]
        raw = (ctypes.c_uint16 * max(argc, 1)).from_address(args)
        # Arguments are decoded before the result is built: building it may
        # allocate, and a GC would move what the arguments point at.
        py_args = [self._decode(raw[i], 0) for i in range(argc)]
        out = fn(*py_args)
        self._encode(out, result)
        return 0

    # ---- values ----

    def _encode(self, value: Any, slot: int) -> None:
        """Write the VM value for ``value`` into the mvm_Value at address ``slot``."""
        lib = self._lib
        if value is None:
            encoded = UNDEFINED
        elif isinstance(value, NullType):
            encoded = NULL
        elif value is True:
            encoded = TRUE
        elif value is False:
            encoded = FALSE
        elif isinstance(value, int):
            if INT14_MIN <= value <= INT14_MAX:
                encoded = ((value << 2) | INT14_TAG) & 0xFFFF
            elif -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
                encoded = lib.new_number(float(value))
            else:
                raise OverflowError(f"int {value} has no exact JavaScript number; pass a float")
        elif isinstance(value, float):
            encoded = lib.new_number(value)
        elif isinstance(value, str):
            encoded = self._new_blob(value.encode("utf-8"), lib.new_string)
        elif isinstance(value, (bytes, bytearray, memoryview)):
            encoded = self._new_blob(bytes(value), lib.new_bytes)
        else:
            raise TypeError(f"the native driver cannot pass {type(value).__name__} into the VM")
        ctypes.c_uint16.from_address(slot).value = encoded

    def _new_blob(self, data: bytes, make: Callable[[int], int]) -> int:
        lib = self._lib
        if len(data) > lib.scratch_size:
            raise MicroviumError(f"value of {len(data)} bytes exceeds the scratch area", "MVM_E_ALLOCATION_TOO_LARGE")
        ctypes.memmove(lib.scratch, data, len(data))
        value = int(make(len(data)))
        if value < 0:  # pragma: no cover - allocation failure is fatal in the glue
            raise MicroviumError("the engine could not allocate the value", -value)
        return value

    def _handle(self, depth: int) -> int:
        return self._lib.handles + depth * self._lib.handle_size

    def _decode(self, value: int, depth: int) -> NativeValue:
        """Copy VM value ``value`` out to Python; ``depth`` picks free handles for nesting."""
        lib = self._lib
        value &= 0xFFFF
        if value & INT14_TAG == INT14_TAG:  # int14: the common case, decoded without a call
            return (value >> 2) - INT14_BIAS if value & INT14_SIGN else value >> 2
        kind = lib.type_of(value)
        if kind == T_UNDEFINED:
            return None
        if kind == T_NULL:
            return null
        if kind == T_BOOLEAN:
            return value == TRUE
        if kind == T_NUMBER:
            x: float = lib.to_number(value)
            # Same mapping as mvactors.VM: integral numbers in the safe range are ints.
            if x.is_integer() and -MAX_SAFE_INT <= x <= MAX_SAFE_INT and not (x == 0 and math.copysign(1.0, x) < 0):
                return int(x)
            return x
        if kind == T_STRING:
            address = lib.string(value)
            return ctypes.string_at(address, ctypes.c_uint32.from_address(lib.out_size).value).decode("utf-8")
        if kind == T_UINT8_ARRAY:
            address = lib.bytes(value)
            return ctypes.string_at(address, ctypes.c_uint32.from_address(lib.out_size).value)
        if kind in (T_ARRAY, T_OBJECT):
            return self._decode_container(value, kind, depth)
        raise TypeError(f"the native driver cannot return a guest {TYPE_NAMES[kind]}")

    def _decode_container(self, value: int, kind: int, depth: int) -> list[Any] | dict[str, Any]:
        if depth + 3 > _HANDLE_DEPTH:
            raise MicroviumError("result nested too deeply for the native driver", "MVM_E_STACK_OVERFLOW")
        # Decoding allocates nothing today, but the container, its key list and
        # the current key sit in handles anyway so a GC could not strand them.
        slots = self._handle(depth), self._handle(depth + 1), self._handle(depth + 2)
        try:
            return self._copy_container(value, kind, depth, *slots)
        finally:
            # A stale handle would keep the value alive: the heap (and so GC
            # timing and snapshots) must not depend on what the host looked at.
            for slot in slots:
                ctypes.c_uint16.from_address(slot).value = UNDEFINED

    def _copy_container(
        self, value: int, kind: int, depth: int, holder: int, keys_holder: int, key_slot: int
    ) -> list[Any] | dict[str, Any]:
        lib = self._lib
        ctypes.c_uint16.from_address(holder).value = value
        if kind == T_ARRAY:
            items: list[Any] = []
            for i in range(self._length(holder, key_slot)):
                ctypes.c_uint16.from_address(key_slot).value = ((i << 2) | INT14_TAG) & 0xFFFF
                items.append(self._decode(self._get(holder, key_slot), depth + 3))
            return items
        keys = lib.keys(holder)
        if keys < 0:
            raise MicroviumError("could not list the keys of a guest object", -keys)
        ctypes.c_uint16.from_address(keys_holder).value = keys
        out: dict[str, Any] = {}
        for i in range(self._length(keys_holder, key_slot)):
            ctypes.c_uint16.from_address(key_slot).value = ((i << 2) | INT14_TAG) & 0xFFFF
            ctypes.c_uint16.from_address(key_slot).value = self._get(keys_holder, key_slot)
            name = self._decode(ctypes.c_uint16.from_address(key_slot).value, depth + 3)
            out[str(name)] = self._decode(self._get(holder, key_slot), depth + 3)
        return out

    def _length(self, holder: int, key_slot: int) -> int:
        ctypes.c_uint16.from_address(key_slot).value = STR_LENGTH
        return int(self._lib.to_number(self._get(holder, key_slot)))

    def _get(self, holder: int, key_slot: int) -> int:
        value = int(self._lib.get(holder, key_slot))
        if value < 0:
            raise MicroviumError("could not read a guest property", -value)
        return value

    # ---- snapshot, gas, lifecycle ----

    def create_snapshot(self) -> bytes:
        """The VM's current state as snapshot bytes (restorable natively or in wasm)."""
        lib = self._check()
        size = lib.snapshot()
        if size < 0:
            raise MicroviumError("the engine could not create a snapshot", -size)
        return ctypes.string_at(lib.scratch, size)

    def set_gas(self, n: int) -> None:
        """Stop guest code after ``n`` more instructions (GasExhausted); -1 disables the limit."""
        self._check().set_gas(n)

    def run_gc(self, squeeze: bool = False) -> None:
        """Collect garbage now (``squeeze``: also compact into as few buckets as possible)."""
        self._check().gc(1 if squeeze else 0)

    def memory_stats(self) -> tuple[int, ...]:
        """The engine's ``mvm_TsMemoryStats`` fields, in declaration order (as ``VM.get_memory_stats``)."""
        lib = self._check()
        lib.memory_stats()
        return tuple((ctypes.c_size_t * _abi.MEMORY_STATS_FIELDS).from_address(lib.stats))

    def gas_remaining(self) -> int:
        """Instructions left before GasExhausted, or -1 when no limit is set."""
        return int(self._check().get_gas())

    def close(self) -> None:
        """Release the process-wide VM slot (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._lib.free_vm()
        if NativeVM._live is self:
            NativeVM._live = None

    def _check(self) -> _Library:
        if self._closed:
            raise VMUnusable("this NativeVM is closed")
        return self._lib

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


__all__ = ["NativeVM", "NativeValue", "native_available"]

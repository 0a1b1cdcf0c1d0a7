"""Python <-> guest values: the VM's handle slots, conversion both ways, and the proxies' property access.

``Marshal`` is the VM's mixin for them (see _state): its public methods are the
:class:`~mvactors.vm.values.GuestHeap` surface the proxies use.
:func:`check_args` applies the same mapping without a VM.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import MicroviumError
from . import _wasm
from ._abi import (
    FALSE,
    INT14_BIAS,
    INT14_MAX,
    INT14_MIN,
    INT14_SIGN,
    INT14_TAG,
    MAX_ALLOCATION,
    MAX_ARRAY_ITEMS,
    MAX_STRING_BYTES,
    NAN,
    NEG_ZERO,
    NULL,
    STR_LENGTH,
    STR_PROTO,
    T_ARRAY,
    T_CLASS,
    T_FUNCTION,
    T_NUMBER,
    T_OBJECT,
    T_STRING,
    T_UINT8_ARRAY,
    TRUE,
    UNDEFINED,
)
from ._calls import fast_function_class
from ._state import NOT_CONVERTING, VMState
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
    null,
    slot_in,
    slot_of,
)

_HANDLE_CHUNK = 32  # handle slots linked into the VM's roots at a time
MAX_NESTING = 64
"""Containers nested deeper than this are refused both ways (ValueError), well inside Python's recursion limit."""
HEAP_ROOM = 0x7000
"""Guest heap bytes an argument may bring the VM to: the engine's heap limit (0x7400) less a margin."""
_CHECKED_ABOVE = 2048  # arguments estimated smaller than this are copied in without checking the heap
_REPR_DEPTH = 4  # nesting that repr() of a proxy shows


def unsafe_int(number: int) -> OverflowError:
    return OverflowError(
        f"int {number} is outside ±2**53 and has no exact JavaScript number; pass float(x) to accept rounding")


def bad_key(key: object) -> TypeError:
    return TypeError(f"dict keys passed to the VM must be str, not {type(key).__name__}")


def bad_type(value: object) -> TypeError:
    return TypeError(f"values of type {type(value).__name__} cannot be passed to the VM")


def heap_estimate(obj: Any, depth: int = 0) -> int:
    """Guest heap bytes that copying ``obj`` in allocates, at most (headers, interned keys, property cells)."""
    t = type(obj)
    if obj is None or t is bool or obj is null:
        return 0
    if t is int:
        return 0 if INT14_MIN <= obj <= INT14_MAX else 10
    if t is float:
        return 10
    if isinstance(obj, str):
        return 3 + len(obj.encode("utf-8", "surrogatepass")) if obj.isascii() else 3 + 4 * len(obj)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return 4 + len(obj)
    if depth >= MAX_NESTING:
        return 0  # refused while copying
    if isinstance(obj, (list, tuple)):
        return 8 + 2 * len(obj) + sum(heap_estimate(item, depth + 1) for item in obj)
    if isinstance(obj, dict):
        # a property cell (10 B) and an interned key with its intern cell per key
        return 6 + sum(19 + heap_estimate(key, depth + 1) + heap_estimate(item, depth + 1)
                       for key, item in obj.items())
    return 0


class Marshal(VMState):
    """Values crossing between Python and the guest, the handle slots that root them, and the
    :class:`~mvactors.vm.values.GuestHeap` surface the proxies use (the public methods here)."""

    __slots__ = ()

    # ---- handle slots ----

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
        """The guest value in ``slot`` now (the GC may have moved it since)."""
        return int(self._mem16[self._handles16 + slot * self._handle_stride])

    def _slot_addr(self, slot: int) -> int:
        """The address of ``slot`` in linear memory, for glue operations that take handles."""
        return self._handles + slot * self._layout.handle_size

    def release(self, slot: int) -> None:
        """Let the value in ``slot`` go (a no-op once the VM is closed)."""
        if self._inst is not None:
            self._mem16[self._handles16 + slot * self._handle_stride] = UNDEFINED
            self._free.append(slot)

    def _result_value(self) -> Any:
        """The value the glue left in its result handle (a thrown value, a settled promise's value)."""
        return self._from_guest(self._mem16[self._layout.result >> 1])

    # ---- Python -> guest ----

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
        if obj is null:
            return NULL
        if isinstance(obj, GuestRef):
            slot = slot_in(obj, self)
            if slot < 0:
                raise TypeError("a guest value from another VM cannot be passed to this VM; use to_python() to copy it")
            if self._inst is None:
                self._live()
            return self._slot_value(slot)
        if isinstance(obj, (list, tuple)):
            if not self._converting:
                self._check_room(obj)
            return self._new_array(obj)
        if isinstance(obj, dict):
            if not self._converting:
                self._check_room(obj)
            return self._new_object(obj)
        if callable(obj):
            return self._host_function_value(obj)
        raise bad_type(obj)

    def _check_room(self, obj: list[Any] | tuple[Any, ...] | dict[Any, Any]) -> None:
        """Refuse an argument the VM's heap cannot take, before any of it reaches the engine.

        Running out of heap is fatal to a VM; an argument is the caller's to fix, so
        it is refused while the VM is still whole.
        """
        if len(obj) < 16 and not any(isinstance(v, (list, tuple, dict, str, bytes)) for v in
                                     (obj.values() if isinstance(obj, dict) else obj)):
            return
        try:
            need = heap_estimate(obj)
        except (RecursionError, UnicodeEncodeError):
            return  # the copy itself refuses it, with the right error
        if need < _CHECKED_ABOVE:
            return
        # (No collection here: arguments already written to the glue's handles would not survive it.)
        used = self.get_memory_stats().virtual_heap_used
        if used + need > HEAP_ROOM:
            raise MicroviumError(
                f"the {type(obj).__name__} argument needs about {need} bytes of guest heap and the VM has "
                f"{max(HEAP_ROOM - used, 0)} left (a VM heap holds about 29 KB; run_gc() frees garbage): "
                "pass less at a time", "MVM_E_OUT_OF_MEMORY")

    def _new(self, make: Callable[[_wasm.Instance], int]) -> int:
        inst = self._live()
        try:
            return int(make(inst)) & 0xFFFF
        except _wasm.EngineTrap as trap:
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
        if len(self._converting) >= MAX_NESTING:
            raise ValueError(f"the value nests containers deeper than {MAX_NESTING} levels, the most a VM accepts")
        if id(container) in self._converting:
            raise TypeError(f"cannot pass a vm-referencing {type(container).__name__} to the VM "
                            "(values are copied in, and a cycle never ends)")
        if self._converting is NOT_CONVERTING:
            self._converting = set()
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
            self.release(array)
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
            self.release(obj)
            self._converting.discard(id(mapping))

    def _host_function_value(self, fn: Callable[..., Any]) -> int:
        import_id = next((i for i, candidate in self._imports.items() if candidate is fn), None)
        if import_id is None:
            raise TypeError(f"host functions cannot be passed to the VM (got {type(fn).__name__}); "
                            "only functions from the import map that the snapshot imports can")
        value = self._new(lambda inst: inst.new_host_func(import_id))
        if value == 0xFFFF:  # -1 as a 16-bit value: the snapshot does not import it
            raise TypeError(f"host function for import {import_id} cannot be passed to the VM: "
                            "the snapshot does not import that ID")
        return value

    # ---- guest -> Python ----

    def _from_guest(self, value: int, promise_ok: bool = False, this: GuestRef | None = None) -> Any:
        """``value`` as Python: plain data for scalars, a proxy holding a new slot otherwise.

        ``promise_ok`` makes a promise a GuestPromise; ``this`` makes a function a method bound to it.
        """
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
            size = inst.state32[inst.layout.out_size_word]
            try:
                return ctypes.string_at(self._base + ptr, size).decode("utf-8", "surrogatepass")
            except UnicodeDecodeError as exc:
                raise MicroviumError(f"a guest string is not valid UTF-8 ({exc.reason} at byte {exc.start}): "
                                     "the snapshot is corrupt", "MVM_E_INVALID_BYTECODE") from None
        if kind == T_FUNCTION:
            host_id = inst.host_func_id(value)
            if host_id >= 0 and host_id in self._imports:
                return self._imports[host_id]
            if this is None:
                return fast_function_class(inst)(self, self._hold_value(value))
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

    # ---- the proxies' heap access (GuestHeap) ----

    def _key_value(self, key: str | int) -> int:
        if isinstance(key, bool) or not isinstance(key, (str, int)):
            raise TypeError(f"guest property keys must be str or int, not {type(key).__name__}")
        if isinstance(key, int) and not 0 <= key <= INT14_MAX:
            raise IndexError(f"guest array index {key} out of range")
        return self._to_guest(key)

    def get_property(self, slot: int, key: str | int, bind: bool) -> Any:
        """Property ``key`` of the object in ``slot``; ``bind`` makes a function read from it a method."""
        inst = self._live()
        key_slot = self._hold_value(self._key_value(key))
        try:
            r = self._guard(lambda: inst.get(self._slot_addr(slot), self._slot_addr(key_slot)))
        finally:
            self.release(key_slot)
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

    def set_property(self, slot: int, key: str | int, value: Any) -> None:
        """Set property ``key`` of the object in ``slot`` to (a copy of) ``value``."""
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
            self.release(key_slot)
            self.release(value_slot)
        if err < 0:
            self._raise_call_error(-err)

    def keys(self, slot: int) -> list[str]:
        """The own enumerable keys of the object in ``slot``, in guest order."""
        inst = self._live()
        r = self._guard(lambda: inst.keys(self._slot_addr(slot)))
        if r < 0:
            self._raise_call_error(-r)
        keys = self._from_guest(r)
        return [str(k) for k in keys] if isinstance(keys, GuestArray) else []

    def read_bytes(self, slot: int) -> bytes:
        """A copy of the Uint8Array in ``slot``."""
        inst = self._live()
        ptr = inst.bytes(self._slot_value(slot))
        size = inst.state32[inst.layout.out_size_word]
        return ctypes.string_at(self._base + ptr, size)

    def write_bytes(self, slot: int, data: bytes, offset: int) -> None:
        """Write ``data`` into the Uint8Array in ``slot`` at ``offset`` (it must fit)."""
        inst = self._live()
        ptr = inst.bytes(self._slot_value(slot))
        size = inst.state32[inst.layout.out_size_word]
        if offset < 0 or offset + len(data) > size:
            raise IndexError(f"writing {len(data)} bytes at offset {offset} overflows a Uint8Array of {size}")
        ctypes.memmove(self._base + ptr + offset, data, len(data))

    def same_value(self, a: int, b: int) -> bool:
        """Whether slots ``a`` and ``b`` hold the same guest value."""
        return bool(self._live().equal(self._slot_value(a), self._slot_value(b)))

    def to_python(self, slot: int) -> Any:
        """A deep copy of the value in ``slot`` as plain Python data (functions stay proxies)."""
        return self._copy_proxy(self._from_guest(self._slot_value(slot)), 0)

    def _copy_proxy(self, value: Any, depth: int) -> Any:
        if isinstance(value, GuestBytes):
            return bytes(value)
        if isinstance(value, (GuestArray, GuestObject)) and depth >= MAX_NESTING:
            raise ValueError(f"the guest value nests containers deeper than {MAX_NESTING} levels (cyclic?); "
                             "cannot copy it to Python")
        if isinstance(value, GuestArray):
            return [self._copy_proxy(item, depth + 1) for item in value]
        if isinstance(value, GuestFunction):
            return value
        if isinstance(value, GuestObject):
            return {k: self._copy_proxy(self.get_property(slot_of(value), k, bind=False), depth + 1)
                    for k in value.keys()}  # noqa: SIM118 - a proxy, not a dict
        return value

    def describe(self, slot: int) -> str:
        """A short text of the value in ``slot``, for ``repr``."""
        value = self._from_guest(self._slot_value(slot))
        if isinstance(value, GuestFunction):
            return "function"
        try:
            return repr(self._copy_proxy(value, MAX_NESTING - _REPR_DEPTH))
        except ValueError:
            return "..."


_SCALAR_TYPES = frozenset({str, float, bool, type(None), bytes})


def check_args(args: tuple[Any, ...]) -> None:
    """Reject arguments no VM accepts, without a VM (e.g. when a message is queued, long before its call).

    Follows the value mapping of :class:`~mvactors.VM`: None, null, bool, int
    within ±2**53, float, str, bytes-like, lists/tuples, dicts with str keys,
    guest values and callables (import-map functions); anything else is a
    TypeError, an out-of-range int an OverflowError.  Finer checks (array
    lengths, key spellings, cycles) stay with the VM.
    """
    for value in args:  # the common case: scalars only, checked without building a stack
        t = type(value)
        if t is int:
            if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
                break
        elif t not in _SCALAR_TYPES:
            break
    else:
        return
    stack: list[Any] = list(args)
    seen: set[int] = set()
    while stack:
        value = stack.pop()
        if value is None or value is null or isinstance(value, (bool, float, str, bytes, bytearray, memoryview)):
            continue
        if isinstance(value, int):
            if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
                raise unsafe_int(value)
            continue
        if isinstance(value, (list, tuple, dict)):
            if id(value) in seen:
                continue  # shared or cyclic: checked once (the VM reports cycles)
            seen.add(id(value))
            if isinstance(value, dict):
                for key in value:
                    if not isinstance(key, str):
                        raise bad_key(key)
                stack.extend(value.values())
            else:
                stack.extend(value)
            continue
        if isinstance(value, GuestRef) or callable(value):
            continue
        raise bad_type(value)

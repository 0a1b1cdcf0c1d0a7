"""What outlives a call: savepoints (roll a VM back in memory) and hibernation records (a VM at rest).

A savepoint copies the parts of the VM's memory in use; a hibernation record
is a snapshot plus where the host's references (async continuations, kept
values) point inside its heap, so :meth:`VM.wake` can give them back.
"""

from __future__ import annotations

import ctypes
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import MicroviumError
from . import _pool, _wasm
from ._abi import PAGE_SIZE, UNDEFINED
from ._host import prepare_imports
from ._marshal import from_guest, hold_value, slot_value
from .snapshot import load_snapshot
from .values import GuestPromise, GuestRef

if TYPE_CHECKING:
    from .machine import VM


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


def savepoint(vm: VM) -> Savepoint:
    """Capture the VM's state between calls so :meth:`rollback` can return to it.

    Copies only the parts of the VM's memory page in use, so it is cheap
    for small VMs (a few KB).  One savepoint is active at a time: taking
    another replaces it.
    """
    if vm._inst is None:
        raise vm._unusable()
    layout = vm._layout
    base = vm._base
    extent = ctypes.c_uint32 * 2  # low_end, top_start: adjacent fields
    low_end, top_start = extent.from_address(base + layout.low_end)
    page = base + layout.page
    string_at = ctypes.string_at
    vm._sp_slots = []
    return Savepoint(
        id(vm),
        string_at(base + layout.state, layout.state_size),
        string_at(page, low_end),
        string_at(page + top_start, PAGE_SIZE - top_start) if top_start < PAGE_SIZE else b"",
        top_start,
        string_at(base + vm._handles, vm._linked * layout.handle_size),
        vm._linked,
        vm._free.copy(),
        vm._async_ops.copy(),
        vm._next_token,
        list(vm.exports._cache),
    )


def rollback(vm: VM, savepoint: Savepoint) -> None:
    """Return the VM to ``savepoint``: every effect of the calls since then is undone.

    Works after a fatal engine error too (out of memory, say): the VM comes
    back in a fresh WebAssembly instance.  Guest values obtained since the
    savepoint read as ``undefined`` afterwards; asynchronous host calls
    started since then are forgotten.
    """
    if savepoint.vm_id != id(vm) or vm._sp_slots is None:
        raise MicroviumError("rollback() needs the VM's own, latest savepoint", "MVM_E_INVALID_ARGUMENTS")
    inst = vm._inst if vm._inst is not None or not vm._died else _revive(vm)
    if inst is None:
        raise vm._unusable()
    layout = vm._layout
    base = vm._base
    page = base + layout.page
    taken = set(vm._sp_slots)
    now_free = set(vm._free)
    linked_now = vm._linked
    ctypes.memmove(base + layout.state, savepoint.state, len(savepoint.state))
    # The state came from this VM's instance at savepoint time, which may not be this one.
    ctypes.c_uint32.from_address(base + layout.cookie).value = inst.cookie
    ctypes.memmove(page, savepoint.page_low, len(savepoint.page_low))
    ctypes.memmove(page + savepoint.top_start, savepoint.page_top, len(savepoint.page_top))
    ctypes.memmove(base + vm._handles, savepoint.handles, len(savepoint.handles))
    if linked_now > savepoint.linked:
        # Handles linked since the savepoint are no longer in the VM's root list.
        inst.link_handles(linked_now)
    # Slots taken since the savepoint may still be held by proxies: empty them and
    # keep them out of the free list until those proxies release them.
    for slot in taken:
        vm._mem16[vm._handles16 + slot * vm._handle_stride] = UNDEFINED
    vm._free = [slot for slot in savepoint.free if slot not in taken or slot in now_free]
    vm._free.extend(slot for slot in range(savepoint.linked, linked_now) if slot in now_free)
    vm._linked = linked_now
    vm._async_ops = dict(savepoint.async_ops)
    vm._next_token = savepoint.next_token
    cache = vm.exports._cache
    for export_id in set(cache).difference(savepoint.export_ids):
        del cache[export_id]
    vm._sp_slots = []
    vm._host_exception = None
    vm._breakpoint_exception = None


def _revive(vm: VM) -> _wasm.Instance:
    """A fresh instance with this VM's snapshot and import table, for rollback() after a fatal error.

    Instances share one memory layout, so the savepoint's bytes mean the same there.
    """
    instance = _pool.take(stoppable=vm._time_limit is not None)
    load_snapshot(instance, vm._snapshot, prepare_imports(vm._imports)[1])
    vm._use_instance(instance)
    vm._died = False
    vm._closed_reason = "the VM is closed"
    vm.exports._cache.clear()  # their fast call paths are bound to the old instance
    vm._gas = None
    vm._revived = vm._slow = True
    return instance


def hibernate(vm: VM, keep: Mapping[Any, GuestRef] | None = None, collect: bool | None = True) -> Hibernation:
    """Collect garbage, snapshot, and record where the host's references point.

    The snapshot keeps the heap verbatim, so pending asynchronous host
    calls and the guest values in ``keep`` survive in it even when no guest
    global reaches them; :meth:`wake` turns the recorded offsets back into
    live references.  Call between guest calls; the VM stays usable.
    ``collect=False`` skips the garbage collection (a cheaper record, e.g.
    for rolling a turn back); ``None`` collects only when it pays (see create_snapshot).
    """
    inst = vm._live()
    keep = dict(keep or {})
    for ref in keep.values():
        if not isinstance(ref, GuestRef) or ref._heap is not vm:
            raise TypeError("hibernate() keeps only guest values of this VM")
    snapshot = vm.create_snapshot(collect=collect)

    def locate(slot: int) -> int:
        value = slot_value(vm, slot)
        offset = int(inst.heap_offset(value))
        return offset if offset >= 0 else ~value  # non-heap values (ROM, well-known) as-is

    return Hibernation(
        snapshot=snapshot,
        async_calls={token: locate(slot) for token, slot in vm._async_ops.items()},
        refs={key: locate(ref._slot) for key, ref in keep.items()},
        next_token=vm._next_token,
    )


def wake_refs(vm: VM, hibernation: Hibernation) -> dict[Any, Any]:
    """In ``vm``, freshly restored from ``hibernation.snapshot``: its async calls and a proxy per kept reference."""
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
        vm._async_ops[token] = hold_value(vm, revive(location))
    vm._next_token = hibernation.next_token
    refs = {key: from_guest(vm, revive(location), promise_ok=True) for key, location in hibernation.refs.items()}
    for ref in refs.values():
        if isinstance(ref, GuestPromise):
            ref._observed = True  # kept by whoever hibernated the VM, which watches it (or drops it on purpose)
    return refs

"""What outlives a call: snapshots, savepoints (roll a VM back in memory) and hibernation records (a VM at rest).

A savepoint copies the parts of the VM's memory in use; a hibernation record
is a snapshot plus where the host's references (async continuations, kept
values) point inside its heap, so :meth:`VM.wake` can give them back.
``Persistence`` is the VM's mixin for them (see _state).
"""

from __future__ import annotations

import ctypes
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import MicroviumError, VMUnusable, error_name
from . import _pool, _wasm
from ._abi import PAGE_SIZE, SNAPSHOT_HEAP_AT, UNDEFINED
from ._host import HostSide, prepare_imports
from .snapshot import load_snapshot
from .values import GuestPromise, GuestRef, observe, slot_in


def heap_size(snapshot: bytes) -> int:
    """Bytes of heap in a snapshot: the heap is its last section."""
    return len(snapshot) - int.from_bytes(snapshot[SNAPSHOT_HEAP_AT:SNAPSHOT_HEAP_AT + 2], "little")


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


class Persistence(HostSide):
    """Snapshots, savepoints and hibernation of the VM (the garbage collection they pay for too)."""

    __slots__ = ()

    # ---- snapshots and garbage collection ----

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
        if collect is None and heap_size(snapshot) > self._gc_heap + max(512, self._gc_heap // 4):
            self.run_gc(squeeze=True)
            snapshot = self._snapshot_now(inst)
        return snapshot

    def _snapshot_now(self, inst: _wasm.Instance) -> bytes:
        try:
            size = inst.snapshot()
        except _wasm.EngineTrap as trap:
            raise self._die(trap) from None
        if size < 0:
            name = error_name(-size)
            why = (": the program and the heap together exceed the 65,535 bytes a snapshot holds; the VM runs "
                   "on, and can be snapshotted once it holds less" if name == "MVM_E_SNAPSHOT_TOO_LARGE" else "")
            raise MicroviumError(f"cannot create snapshot{why} ({name})", -size)
        return _wasm.bytes_at(self._base + self._scratch, size)

    def run_gc(self, squeeze: bool = False) -> None:
        """Collect garbage; ``squeeze`` also compacts the heap into as few buckets as possible."""
        inst = self._live()
        try:
            inst.gc(squeeze)
        except _wasm.EngineTrap as trap:
            raise self._die(trap) from None
        self._gc_heap = self.get_memory_stats().virtual_heap_used

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
            list(self._export_cache),
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
        cache = self._export_cache
        for export_id in set(cache).difference(savepoint.export_ids):
            del cache[export_id]
        self._sp_slots = []
        self._host_exception = None
        self._breakpoint_exception = None

    def _revive(self) -> _wasm.Instance:
        """A fresh instance with this VM's snapshot and import table, for rollback() after a fatal error.

        Instances share one memory layout, so the savepoint's bytes mean the same there.
        """
        instance = _pool.take(stoppable=self._time_limit is not None)
        load_snapshot(instance, self._snapshot, prepare_imports(self._imports)[1])
        self._use_instance(instance)
        self._died = False
        self._closed_reason = "the VM is closed"
        self._export_cache.clear()  # their fast call paths are bound to the old instance
        self._gas = None
        self._revived = self._slow = True
        return instance

    # ---- hibernation ----

    def hibernate(self, keep: Mapping[Any, GuestRef] | None = None, collect: bool | None = True) -> Hibernation:
        """Collect garbage, snapshot, and record where the host's references point.

        The snapshot keeps the heap verbatim, so pending asynchronous host
        calls and the guest values in ``keep`` survive in it even when no guest
        global reaches them; :meth:`wake` turns the recorded offsets back into
        live references.  Call between guest calls; the VM stays usable.
        ``collect=False`` skips the garbage collection (a cheaper record, e.g.
        for rolling a turn back); ``None`` collects only when it pays (see create_snapshot).
        """
        inst = self._live()
        slots = {key: slot_in(ref, self) if isinstance(ref, GuestRef) else -1
                 for key, ref in (keep or {}).items()}
        if any(slot < 0 for slot in slots.values()):
            raise TypeError("hibernate() keeps only guest values of this VM")
        snapshot = self.create_snapshot(collect=collect)

        def locate(slot: int) -> int:
            value = self._slot_value(slot)
            offset = int(inst.heap_offset(value))
            return offset if offset >= 0 else ~value  # non-heap values (ROM, well-known) as-is

        # (Most records, a cluster worker's one per committed turn, keep nothing and await nothing.)
        async_ops = self._async_ops
        return Hibernation(
            snapshot,
            {token: locate(slot) for token, slot in async_ops.items()} if async_ops else {},
            {key: locate(slot) for key, slot in slots.items()} if slots else {},
            self._next_token,
        )

    def _wake_refs(self, hibernation: Hibernation) -> dict[Any, Any]:
        """In this VM, just restored from ``hibernation.snapshot``: its async calls, and a proxy per kept reference."""
        inst = self._live()

        def revive(location: int) -> int:
            if location < 0:
                return ~location
            value = int(inst.value_at_offset(location))
            if value < 0:
                self.close()
                raise MicroviumError(f"hibernation record points outside the snapshot heap ({location})",
                                     "MVM_E_INVALID_ADDRESS")
            return value

        # Root everything before anything can run the GC and move it.
        for token, location in hibernation.async_calls.items():
            self._async_ops[token] = self._hold_value(revive(location))
        self._next_token = hibernation.next_token
        refs = {key: self._from_guest(revive(location), promise_ok=True) for key, location in hibernation.refs.items()}
        for ref in refs.values():
            if isinstance(ref, GuestPromise):
                observe(ref)  # kept by whoever hibernated the VM, which watches it (or drops it on purpose)
        return refs

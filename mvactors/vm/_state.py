"""The VM's state: the fields all of its concepts share, and the life of its engine instance.

``VM`` (machine.py) is one class assembled from a mixin per concept, each in
its own module and each a subclass of the one below it:
``VMState`` <- ``Marshal`` (_marshal) <- ``HostSide`` (_host) <- ``Persistence``
(_persist) <- ``VM``.  The fields are declared once, here, and every mixin
reads them as ``self._x``: the mixins are one class split by concept, not
objects reaching into each other.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

import anyio

from ..errors import TimeLimitExceeded, VMUnusable
from . import _pool
from . import _wasm as _engine
from ._abi import MEMORY_STATS_FIELDS
from ._calls import fatal_reason

if TYPE_CHECKING:
    from ._host import AsyncHandler
    from .machine import VM
    from .values import GuestPromise, GuestRef


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


NOT_CONVERTING: set[int] = set()
"""Every VM's ``_converting`` until it copies in its first container: never added to."""


class VMState:
    """The fields of a VM and the life of its engine instance (use, check, die, discard)."""

    __slots__ = ("__weakref__", "_arg0", "_async_ops", "_base", "_breakpoint_exception", "_breakpoint_hit",
                 "_call_address", "_closed_reason", "_converting", "_died", "_export_cache", "_free", "_gas",
                 "_gc_heap",
                 "_handle_stride", "_handles", "_handles16", "_host_exception", "_host_tasks", "_imports", "_inst",
                 "_layout", "_linked", "_max_args", "_mem16", "_next_token", "_pending", "_revived", "_scratch",
                 "_slow", "_snapshot", "_sp_slots", "_task_group", "_this16", "_time_limit", "_waiters",
                 "async_handler")

    def __init__(self, instance: _engine.Instance, snapshot: bytes, imports: dict[int, Callable[..., Any]],
                 breakpoint_hit: Callable[[int], Any] | None, time_limit: float | None) -> None:
        self._snapshot = snapshot
        self._imports = imports
        self._breakpoint_hit = breakpoint_hit
        self._host_exception: tuple[int, BaseException] | None = None
        self._breakpoint_exception: BaseException | None = None
        self._free: list[int] = []
        self._gas: Any = None  # view of the engine's instruction counter, made on first use
        self._gc_heap = 0  # heap bytes after the last collection (create_snapshot collects when it grew)
        self._linked = 0
        self._pending: dict[int, tuple[Any, list[Any]]] = {}  # promise slot -> (event, [outcome])
        # ids of containers being copied in (cycle check); the shared empty one until the first
        # container (an empty set per VM is 216 B of every live VM)
        self._converting: set[int] = NOT_CONVERTING
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
        self._export_cache: dict[int, Any] = {}  # export ID -> its value (shared with the Exports view)
        layout = self._layout = instance.layout
        self._arg0 = layout.args >> 1
        self._handle_stride = layout.handle_size >> 1
        self._handles = 0  # set after restore: address of handle slot 0
        self._handles16 = 0
        self._scratch = 0  # set after restore: where strings and snapshots pass through
        self._this16 = layout.this_value >> 1
        self._max_args = layout.max_args
        self._slow = breakpoint_hit is not None
        self._time_limit = time_limit  # the hard stop's, for this VM's instance (and any it is revived into)
        self._use_instance(instance)

    if TYPE_CHECKING:
        # Defined by a concept higher up the chain and used by a lower one (attach() takes a
        # _wasm.Host, the proxies a GuestHeap: the whole VM is both, its lower parts are not).
        def on_host_call(self, import_id: int) -> int: ...  # HostSide: the engine's callbacks
        def on_breakpoint(self, address: int) -> None: ...  # HostSide
        async def await_promise(self, promise: GuestPromise) -> Any: ...  # HostSide
        def promise_state(self, slot: int) -> str: ...  # HostSide
        def _raise_call_error(self, err: int) -> NoReturn: ...  # VM: a failed entry's exception
        def _call_raw_slot(self, slot: int, argc: int) -> None: ...  # VM: call a held function
        def call(self, slot: int, args: tuple[Any, ...], this: GuestRef | None = None) -> Any: ...  # VM
        def close(self) -> None: ...  # VM
        @property
        def vm(self) -> VM: ...  # VM

    def _use_instance(self, instance: _engine.Instance) -> None:
        """Run in ``instance`` from now on (all instances share one memory layout)."""
        instance.attach(self)
        instance.time_limit = self._time_limit
        self._inst: _engine.Instance | None = instance
        self._base = instance.base
        self._mem16 = instance.mem16
        self._call_address = instance.call_address  # for the trivial call: a slot read, not a dict lookup

    def _live(self) -> _engine.Instance:
        inst = self._inst
        if inst is None:
            raise self._unusable()
        return inst

    def _unusable(self) -> VMUnusable:
        return VMUnusable(self._closed_reason, "MVM_E_FATAL_ERROR_MUST_KILL_VM")

    def _discard_instance(self) -> None:
        inst = self._inst
        self._inst = None
        self._slow = True
        if inst is not None:
            _pool.give_back(inst)

    def _die(self, trap: _engine.EngineTrap) -> VMUnusable:
        reason = fatal_reason(trap)
        self._closed_reason = f"the VM is unusable after a fatal error: {reason}"
        self._discard_instance()
        self._died = True
        error = TimeLimitExceeded if trap.time_limit is not None else VMUnusable
        return error(f"the VM hit a fatal error and cannot be used again: {reason}",
                     trap.fatal_code or "MVM_E_FATAL_ERROR_MUST_KILL_VM")

    def _guard(self, fn: Callable[[], int]) -> int:
        try:
            return fn()
        except _engine.EngineTrap as trap:
            raise self._die(trap) from None

    def _update_slow(self) -> None:
        # The fast call path skips all bookkeeping unless this flag is set.  A VM revived
        # into another instance stays on the slow path: proxies made before hold fast
        # paths bound to the old instance.
        self._slow = (self._inst is None or bool(self._pending) or self._breakpoint_hit is not None
                      or self._revived)

    def get_memory_stats(self) -> MemoryStats:
        """The engine's memory statistics for this VM."""
        inst = self._live()
        inst.memory_stats()
        fields = (ctypes.c_uint32 * MEMORY_STATS_FIELDS).from_address(self._base + self._layout.stats)
        return MemoryStats(*fields)


__all__ = ["MemoryStats", "VMState"]

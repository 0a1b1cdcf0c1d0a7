"""Floor 1: the Microvium engine under wasmtime, one snapshot per ``VM``.

Knows nothing of actors.  The only wasmtime importer is ``_wasm``.

* ``_abi``: the glue's ABI, one table (engine/build.py makes glue.c's header from it)
* ``_wasm``: the wasmtime driver, one typed method per glue operation
* ``_pool``: engine instances of closed VMs, for reuse
* ``snapshot``: what may be passed as a snapshot; its header facts
* ``machine``: ``VM``, its lifetime and calls; assembled from one mixin per concept:
  ``_state`` (fields, the instance's life) <- ``_marshal`` (Python <-> guest values, handle slots,
  the proxies' heap access) <- ``_host`` (host functions, async host calls, guest promises)
  <- ``_persist`` (snapshots, savepoints, hibernation)
* ``_calls``: the hot-path function class; failed calls to exceptions
* ``values``: ``null``, the proxies and the ``GuestHeap`` protocol they use
* ``_native``: the native reference driver (re-exported by ``mvactors.testing``)
"""

from ..errors import ExportNotFound, HostFunctionError
from ..imports import AsyncImport, async_import
from ._host import ImportMap, is_async_import, rejection_value, run_async_import
from ._marshal import check_args
from ._persist import Hibernation, Savepoint
from .machine import VM, MemoryStats, load_engine
from .snapshot import SnapshotLike
from .values import (
    MAX_SAFE_INT,
    GuestArray,
    GuestBytes,
    GuestClass,
    GuestFunction,
    GuestHeap,
    GuestObject,
    GuestPromise,
    GuestRef,
    null,
)

__all__ = [
    "MAX_SAFE_INT",
    "VM",
    "AsyncImport",
    "ExportNotFound",
    "GuestArray",
    "GuestBytes",
    "GuestClass",
    "GuestFunction",
    "GuestHeap",
    "GuestObject",
    "GuestPromise",
    "GuestRef",
    "Hibernation",
    "HostFunctionError",
    "ImportMap",
    "MemoryStats",
    "Savepoint",
    "SnapshotLike",
    "async_import",
    "check_args",
    "is_async_import",
    "load_engine",
    "null",
    "rejection_value",
    "run_async_import",
]

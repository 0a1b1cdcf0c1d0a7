"""Floor 1: the Microvium engine under wasmtime, one snapshot per ``VM``.

Knows nothing of actors.  The only wasmtime importer is ``_wasm``.
"""

from ..errors import ExportNotFound, HostFunctionError
from ..imports import AsyncImport, async_import
from ._marshal import check_args
from .machine import (
    VM,
    Hibernation,
    ImportMap,
    MemoryStats,
    Savepoint,
    SnapshotLike,
    is_async_import,
    rejection_value,
    run_async_import,
)
from .values import (
    MAX_SAFE_INT,
    GuestArray,
    GuestBytes,
    GuestClass,
    GuestFunction,
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
    "null",
    "rejection_value",
    "run_async_import",
]

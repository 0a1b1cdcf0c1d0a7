"""mvactors: Microvium snapshots as sandboxed VMs and actors in Python.

>>> import mvactors
>>> vm = mvactors.VM.restore(mvactors.compile("vmExport(1, (x) => x + 1);"))
>>> vm.exports[1](41)
42
"""

from . import imports
from .actors import (
    Actor,
    ActorFailed,
    Clock,
    GasPolicy,
    HostCallRecord,
    MailboxFull,
    PauseEvent,
    Runtime,
    VirtualClock,
    WallClock,
)
from .cluster import connect
from .compiler import compile
from .errors import CompileError, GasExhausted, GuestError, MicroviumError, VMUnusable
from .store import CheckpointStore, MemoryStore, SQLiteStore
from .vm import (
    VM,
    AsyncImport,
    ExportNotFound,
    GuestArray,
    GuestBytes,
    GuestClass,
    GuestFunction,
    GuestObject,
    GuestPromise,
    GuestRef,
    Hibernation,
    HostFunctionError,
    MemoryStats,
    async_import,
    null,
)

__version__ = "0.1.0"

__all__ = [
    "Actor",
    "ActorFailed",
    "AsyncImport",
    "CheckpointStore",
    "Clock",
    "GasPolicy",
    "Hibernation",
    "HostCallRecord",
    "MailboxFull",
    "MemoryStore",
    "PauseEvent",
    "Runtime",
    "SQLiteStore",
    "VirtualClock",
    "WallClock",
    "imports",
    "CompileError",
    "ExportNotFound",
    "GasExhausted",
    "GuestArray",
    "GuestBytes",
    "GuestClass",
    "GuestError",
    "GuestFunction",
    "GuestObject",
    "GuestPromise",
    "GuestRef",
    "HostFunctionError",
    "MemoryStats",
    "MicroviumError",
    "VM",
    "VMUnusable",
    "async_import",
    "compile",
    "connect",
    "null",
]

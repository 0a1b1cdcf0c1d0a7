"""mvactors: Microvium snapshots as sandboxed VMs and actors in Python.

>>> import mvactors
>>> vm = mvactors.VM.restore(mvactors.compile("vmExport(1, (x) => x + 1);"))
>>> vm.exports[1](41)
42
"""

from . import imports
from .actor import Actor, ActorFailed, GasPolicy, HostCallRecord, MailboxFull, PauseEvent
from .clock import Clock, VirtualClock, WallClock
from .compiler import compile
from .errors import CompileError, GasExhausted, GuestError, MicroviumError, VMUnusable
from .runtime import Runtime
from .store import CheckpointStore, MemoryStore, SQLiteStore
from .values import (
    AsyncImport,
    GuestArray,
    GuestBytes,
    GuestClass,
    GuestFunction,
    GuestObject,
    GuestPromise,
    GuestRef,
    async_import,
    null,
)
from .vm import VM, ExportNotFound, Hibernation, HostFunctionError, MemoryStats

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
    "null",
]

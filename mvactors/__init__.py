"""mvactors: Microvium snapshots as sandboxed VMs and actors in Python.

>>> import mvactors
>>> vm = mvactors.VM.restore(mvactors.compile("vmExport(1, (x) => x + 1);"))
>>> vm.exports[1](41)
42
"""

from . import imports
from .actors import (
    Actor,
    ActorRecord,
    AsyncCall,
    Clock,
    GasPolicy,
    HostCallRecord,
    HostCalls,
    PauseEvent,
    PendingCall,
    Reply,
    Runtime,
    TurnOutcome,
    VirtualClock,
    WallClock,
)
from .cluster import Worker, connect
from .compiler import compile
from .errors import (
    ActorError,
    ActorEvicted,
    ActorExists,
    ActorFailed,
    ClusterError,
    CompileError,
    GasExhausted,
    GuestError,
    MailboxFull,
    MicroviumError,
    RecordCorrupt,
    RuntimeNotRunning,
    VMUnusable,
)
from .imports import current_call, journaled
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
    "ActorError",
    "ActorEvicted",
    "ActorExists",
    "ActorFailed",
    "ActorRecord",
    "AsyncCall",
    "ClusterError",
    "HostCalls",
    "PendingCall",
    "RecordCorrupt",
    "Reply",
    "RuntimeNotRunning",
    "TurnOutcome",
    "current_call",
    "journaled",
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
    "Worker",
    "null",
]

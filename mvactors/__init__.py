"""mvactors: Microvium snapshots as sandboxed VMs and actors in Python.

>>> import mvactors
>>> vm = mvactors.VM.restore(mvactors.compile("vmExport(1, (x) => x + 1);"))
>>> vm.exports[1](41)
42
"""

from typing import TYPE_CHECKING, Any

from . import imports
from .actors import (
    Actor,
    ActorRecord,
    AsyncCall,
    Clock,
    Eviction,
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
from .compiler import compile
from .errors import (
    ActorError,
    ActorEvicted,
    ActorExists,
    ActorFailed,
    Cancelled,
    ClusterError,
    CompileError,
    EngineExhausted,
    GasExhausted,
    GuestError,
    MailboxFull,
    MicroviumError,
    RecordCorrupt,
    RuntimeNotRunning,
    TimeLimitExceeded,
    UpgradeFailed,
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

if TYPE_CHECKING:
    from .cluster import Worker, connect

# The cluster needs redis-py, an extra (`pip install 'mvactors[redis]'`): loaded on first use.
_CLUSTER_NAMES = frozenset({"connect", "Worker"})


def __getattr__(name: str) -> Any:
    if name in _CLUSTER_NAMES:
        try:
            from . import cluster
        except ModuleNotFoundError as exc:
            if exc.name is not None and exc.name.split(".")[0] == "redis":
                raise ImportError(f"mvactors.{name} needs redis-py: pip install 'mvactors[redis]'") from exc
            raise
        return getattr(cluster, name)
    raise AttributeError(f"module 'mvactors' has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [
    "Actor",
    "ActorError",
    "ActorEvicted",
    "Cancelled",
    "ActorExists",
    "ActorFailed",
    "ActorRecord",
    "AsyncCall",
    "ClusterError",
    "HostCalls",
    "PendingCall",
    "RecordCorrupt",
    "UpgradeFailed",
    "Reply",
    "RuntimeNotRunning",
    "TurnOutcome",
    "current_call",
    "journaled",
    "AsyncImport",
    "CheckpointStore",
    "Clock",
    "Eviction",
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
    "TimeLimitExceeded",
    "EngineExhausted",
    "VMUnusable",
    "async_import",
    "compile",
    "connect",
    "Worker",
    "null",
]

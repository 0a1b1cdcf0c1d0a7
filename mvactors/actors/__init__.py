"""Floor 2: actors (one VM, one mailbox, one turn at a time) and the runtime that hosts many.

Imports only the public names of :mod:`mvactors.vm`.
"""

from ..errors import ActorError, ActorEvicted, ActorExists, ActorFailed, MailboxFull, RecordCorrupt, RuntimeNotRunning
from ._turns import TurnOutcome
from .actor import Actor
from .cell import ActorState
from .clock import Clock, VirtualClock, WallClock
from .effects import AsyncCall, HostCalls
from .gas import GasPolicy, HostCallRecord, PauseEvent
from .mailbox import Reply
from .metrics import ActorMetrics
from .record import ActorRecord, PendingCall
from .runtime import Eviction, Runtime

__all__ = [
    "Actor",
    "ActorError",
    "ActorEvicted",
    "ActorExists",
    "ActorFailed",
    "ActorMetrics",
    "ActorRecord",
    "ActorState",
    "AsyncCall",
    "Clock",
    "Eviction",
    "GasPolicy",
    "HostCallRecord",
    "HostCalls",
    "MailboxFull",
    "PauseEvent",
    "PendingCall",
    "RecordCorrupt",
    "Reply",
    "Runtime",
    "RuntimeNotRunning",
    "TurnOutcome",
    "VirtualClock",
    "WallClock",
]

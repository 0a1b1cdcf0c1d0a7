"""Floor 2: actors (one VM, one mailbox, one turn at a time) and the runtime that hosts many.

Imports only the public names of :mod:`mvactors.vm`.
"""

from .actor import Actor, ActorFailed, GasPolicy, HostCallRecord, MailboxFull, PauseEvent
from .clock import Clock, VirtualClock, WallClock
from .runtime import Runtime

__all__ = [
    "Actor",
    "ActorFailed",
    "Clock",
    "GasPolicy",
    "HostCallRecord",
    "MailboxFull",
    "PauseEvent",
    "Runtime",
    "VirtualClock",
    "WallClock",
]

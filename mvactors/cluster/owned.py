"""What a worker knows about one actor it holds the lease of."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..actors import Actor, Reply
from .store import ActorKeys


@dataclass(slots=True)
class Mail:
    """One mailbox entry, as read from the actor's stream."""

    stream_id: str
    message_id: str
    export_id: int
    args: list[Any]
    wants_reply: bool


@dataclass(eq=False, slots=True)
class Owned:
    """An actor this worker owns: its lease epoch, what Redis has committed, what ran since.

    ``turns``/``applied_pos`` run ahead of ``committed_turns``/``committed_pos`` until the
    next commit lands; ``replies`` wait for that commit (no caller sees an uncommitted turn).
    """

    actor_id: str
    keys: ActorKeys
    epoch: str
    lease_ok_at: float  # monotonic time the last successful acquire/renew was sent
    committed_turns: int
    committed_pos: str
    journal: dict[int, bytes]
    actor: Actor | None = None
    turns: int = 0
    applied_pos: str = "0-0"
    read_pos: str = "0-0"
    buffer: deque[Mail] = field(default_factory=deque)  # read from the stream, not yet submitted
    running: deque[tuple[Mail, Reply]] = field(default_factory=deque)  # submitted, turn not yet run
    replies: list[tuple[str, bytes]] = field(default_factory=list)  # (reply key, payload) for the next commit
    settling: list[tuple[str, Reply]] = field(default_factory=list)  # replies of async exports not settled yet
    more_mail: bool = True  # the stream may hold entries after read_pos
    committing: bool = False
    awaiting_host: bool = False  # the last committed record awaits a host call (not only sleeps)
    next_due: float | None = None  # the last committed record's earliest sleep, wall seconds
    quiet_since: float | None = None
    gone: bool = False  # dropped or released: nothing more may be committed from here

    @property
    def uncommitted(self) -> int:
        return self.turns - self.committed_turns

    def quiet(self) -> bool:
        """Nothing to run or commit: a candidate for release."""
        return (not self.buffer and not self.running and not self.more_mail and not self.committing
                and self.uncommitted == 0)

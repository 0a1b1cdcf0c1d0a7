"""What a worker knows about one actor it holds the lease of."""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import anyio

from ..actors import Actor, PendingCall, Reply
from .keys import ActorKeys
from .lease import Lease
from .wire import Mail, reply_payload


@dataclass(eq=False, slots=True)
class Owned:
    """An actor this worker owns: its lease epoch, what Redis has committed, what ran since.

    ``turns``/``applied_pos`` run ahead of ``committed_turns``/``committed_pos`` until the
    next commit lands; ``replies`` wait for that commit (no caller sees an uncommitted turn),
    and so do the journaled host calls those turns made (see :meth:`issued`).

    What ran is the runtime's to say: ``submitted`` maps the caller of each message handed to
    the actor to its mailbox entry, and a turn's outcome names the caller it answered.
    """

    actor_id: str
    keys: ActorKeys
    lease: Lease
    committed_turns: int
    committed_pos: str
    journal: dict[int, bytes]
    actor: Actor | None = None
    turns: int = 0
    applied_pos: str = "0-0"
    read_pos: str = "0-0"
    buffer: deque[Mail] = field(default_factory=deque)  # read from the stream, not yet submitted
    submitted: dict[Reply, Mail] = field(default_factory=dict)  # handed to the actor, its turn not run yet
    replies: list[tuple[str, bytes]] = field(default_factory=list)  # (reply key, payload) for the next commit
    settling: list[tuple[str, Reply]] = field(default_factory=list)  # replies of async exports not settled yet
    more_mail: bool = True  # the stream may hold entries after read_pos
    committing: bool = False
    awaiting_host: bool = False  # the last committed record awaits a host call (not only sleeps)
    next_due: float | None = None  # the last committed record's earliest sleep, wall seconds
    quiet_since: float | None = None
    committed_next_token: int = 1  # async calls with a smaller token were made by committed turns
    journal_due: bool = False  # a turn made a journaled call: commit without waiting for a full batch
    last_failure: str = ""  # JSON of the last failed turn since the last commit (describe's last_failure)
    pause: str = ""  # JSON of a gas pause, for the releasing commit
    # History (spawn(history=K)): None for actors that keep none (an empty deque alone is ~600 B, and a
    # worker may hold 100,000 actors); made by the adoption of one that does.
    history: int = 0  # turns of history kept
    kept: list[tuple[bytes, bytes]] | None = None  # (entry, record after it) per turn, for the next commit
    host_log: list[dict[str, Any]] | None = None  # the running turn's synchronous host calls
    delivered: deque[tuple[int, bool, Any]] | None = None  # async outcomes on their way, in delivery order
    _gone: bool = False
    _progress: anyio.Event | None = None  # set at each commit and when gone (made by the first waiter)

    @property
    def gone(self) -> bool:
        """Dropped or released: nothing more may be committed from here."""
        return self._gone

    @gone.setter
    def gone(self, value: bool) -> None:
        self._gone = value
        self._wake_waiters()

    def at_rest_with(self, pending: tuple[PendingCall, ...]) -> None:
        """Note what the record now in Redis awaits: a host call, and the earliest sleep."""
        if not pending:  # (most commits: nothing pending)
            self.awaiting_host, self.next_due = False, None
            return
        self.awaiting_host = any(p.due is None for p in pending)
        dues = [p.due for p in pending if p.due is not None]
        self.next_due = min(dues) if dues else None

    def committed(self, next_token: int) -> None:
        """A commit landed whose record had allocated the async-call tokens below ``next_token``."""
        self.committed_next_token = max(self.committed_next_token, next_token)
        self._wake_waiters()

    def _wake_waiters(self) -> None:
        # Every commit comes here, a waiter seldom: an Event per commit was a few % of a turn's cost.
        if self._progress is not None:
            self._progress.set()
            self._progress = None

    async def issued(self, token: int) -> bool:
        """Wait until the turn that made async call ``token`` is committed; False if the actor went first.

        A journaled call runs only then: a replay from an older record could hand that token to
        another call, and the journal would give it this call's result (or run this one twice).
        """
        while not self._gone and token >= self.committed_next_token:
            if self._progress is None:
                self._progress = anyio.Event()
            await self._progress.wait()
        return not self._gone

    @property
    def epoch(self) -> str:
        """The fencing epoch of this worker's lease."""
        return self.lease.epoch

    @property
    def uncommitted(self) -> int:
        return self.turns - self.committed_turns

    def quiet(self) -> bool:
        """Nothing to run or commit: a candidate for release."""
        return (not self.buffer and not self.submitted and not self.more_mail and not self.committing
                and self.uncommitted == 0)

    def waiting_callers(self) -> list[str]:
        """The reply keys of every caller waiting on this actor that this worker knows of: turns run
        but not committed, async exports not settled, mail handed to the actor or read from the stream."""
        keys = [key for key, _ in self.replies] + [key for key, _ in self.settling]
        reply = self.keys.reply
        keys += [reply(m.message_id) for m in self.submitted.values() if m.wants_reply]
        keys += [reply(m.message_id) for m in self.buffer if m.wants_reply]
        return keys

    def watch(self, mail: Mail, reply: Reply) -> tuple[str, BaseException] | None:
        """The turn that applied ``mail`` ran: its caller waits on ``reply`` (it is settled, or kept in
        ``settling`` until it is).  A ``send()`` has no caller, yet its failure is reported: its reply is
        watched under ``"!" + message_id`` (a name no reply key has).  Returns (message ID, error) of
        a turn that failed with nobody awaiting it."""
        if mail.wants_reply:
            self.settling.append((self.keys.reply(mail.message_id), reply))
        elif not reply.done:
            self.settling.append(("!" + mail.message_id, reply))
        elif reply.error is not None:
            self.note_failure(mail.message_id, reply.error, awaited=False)
            return mail.message_id, reply.error
        return None

    def note_failure(self, message_id: str, error: BaseException, awaited: bool) -> None:
        """Remember a failed turn for the next commit (describe's ``last_failure``)."""
        self.last_failure = json.dumps({"at": round(time.time(), 3), "message_id": message_id,
                                        "error": f"{type(error).__name__}: {error}", "awaited": awaited})

    def collect_settled(self) -> list[tuple[str, BaseException]]:
        """Move the replies of async exports that settled (in a later turn than their call) to the next commit.

        Returns (message ID, error) of each that failed with nobody awaiting it (a ``send()``)."""
        still = []
        unawaited: list[tuple[str, BaseException]] = []
        for key, reply in self.settling:
            if not reply.done:
                still.append((key, reply))
                continue
            error = reply.error
            if key.startswith("!"):
                if error is not None:
                    self.note_failure(key[1:], error, awaited=False)
                    unawaited.append((key[1:], error))
                continue
            if error is not None:
                self.note_failure(key[len(self.keys.reply("")):], error, awaited=True)
            self.replies.append((key, reply_payload(reply)))
        self.settling = still
        return unawaited

    def settling_refs(self, actor: Actor) -> str:
        """JSON [[promise key, reply key]...] for the replies of async exports not settled yet, by the key
        each promise travels under in the record made at the same moment (``actor.record()``)."""
        if not self.settling:
            return ""
        reply_key = {id(reply): key for key, reply in self.settling}
        pairs = [[ref, reply_key[id(reply)]] for ref, reply in actor.awaiting().items() if id(reply) in reply_key]
        return json.dumps(pairs) if pairs else ""

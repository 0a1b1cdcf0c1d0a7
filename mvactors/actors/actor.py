"""``Actor``: the handle users hold on one actor of a :class:`~mvactors.Runtime`."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from ..errors import ActorError, ActorEvicted, ActorFailed, MailboxFull, RuntimeNotRunning, UpgradeFailed
from ..vm import SnapshotLike
from ..vm.snapshot import export_ids, snapshot_bytes
from ._turns import UPGRADE
from .cell import ActorState, Cell
from .clock import WallClock
from .gas import GasPolicy, PauseEvent, PauseReason
from .mailbox import Message, Reply, check_message
from .metrics import ActorMetrics
from .record import ActorRecord

if TYPE_CHECKING:
    from .runtime import Runtime
    from .services import RuntimeServices


class Actor:
    """A guest VM with a mailbox, run by a :class:`~mvactors.Runtime`.

    Get one from ``await rt.spawn(...)`` (or ``rt.adopt``, ``rt.restore``).
    Results of :meth:`call` are plain Python copies of guest values (the VM may
    hibernate between turns).
    """

    __slots__ = ("__weakref__", "cell", "id", "services")

    def __init__(self, services: RuntimeServices, actor_id: str) -> None:
        #: What the hosting runtime offers this actor and its HostCalls (see RuntimeServices).
        self.services = services
        self.id = actor_id
        #: The actor's state and turn machinery, for its runtime's components (not an application API:
        #: read the properties below).  Set by the runtime right after.
        self.cell: Cell

    @property
    def runtime(self) -> Runtime:
        """The Runtime that hosts this actor."""
        return self.services.runtime

    # ---- what it is ----

    @property
    def state(self) -> ActorState:
        """``"idle"``, ``"running"``, ``"paused"``, ``"hibernated"``, ``"failed"`` or ``"evicted"``."""
        return self.cell.state

    @property
    def mailbox_depth(self) -> int:
        return len(self.cell.mailbox)

    @property
    def metrics(self) -> ActorMetrics:
        return self.cell.metrics

    @property
    def pause(self) -> PauseEvent | None:
        """Why the actor is paused (out of gas), or None."""
        return self.cell.pause

    @property
    def failure(self) -> BaseException | None:
        """What made the actor fail for good, or None."""
        return self.cell.failure

    @property
    def last_failure(self) -> BaseException | None:
        """What the actor's most recent failed turn raised (also a ``send()`` nobody awaited), or None."""
        return self.cell.last_failure

    @property
    def gas(self) -> GasPolicy:
        return self.cell.gas

    @property
    def quota_left(self) -> int | None:
        """Instructions left in the gas quota (None without a quota)."""
        return self.cell.quota_left

    def __repr__(self) -> str:
        return f"<Actor {self.id} {self.state} mailbox={len(self.cell.mailbox)}>"

    # ---- messages ----

    async def call(self, export_id: int, *args: Any, timeout: float | None = None) -> Any:
        """Run export ``export_id`` with ``args`` in a turn; returns its result.

        A guest async function's promise is awaited.  Raises GuestError when the
        guest throws or rejects.  On timeout or cancellation before the turn
        starts, the message is withdrawn (never applied).  ``timeout`` is in
        seconds of the runtime's clock (simulated seconds on a virtual clock).
        When the actor is idle and nothing else is queued, the turn runs at once
        in the caller's task, which lets other tasks run every 64th such call.
        """
        reply = Reply()
        message = Message(export_id, args, reply)
        services = self.services
        if timeout is None and services.can_run_inline(self):
            check_message(export_id, args)  # (can_run_inline saw it alive, not evicted, runtime running)
            self.cell.mail().append(message)
            if services.run_inline(self):
                await services.checkpoint()  # let others run: this caller may be looping over calls
            return reply.result() if reply.done else await reply.wait()
        try:
            if timeout is None:
                await self._enqueue(message)
                return await reply.wait()
            # The timeout covers waiting for mailbox space too.
            if isinstance(services.clock, WallClock):
                with anyio.fail_after(timeout):
                    await self._enqueue(message)
                    return await reply.wait()
            return await self._call_until(message, reply, services.clock.now() + timeout)
        except BaseException as exc:
            if reply.done and isinstance(exc, TimeoutError):
                # The deadline raced with the reply: the turn ran, so report its outcome.
                return reply.result()
            self.cell.withdraw(message)
            raise

    async def _call_until(self, message: Message, reply: Reply, deadline: float) -> Any:
        """A call with its deadline on the runtime's clock (simulated seconds on a virtual clock)."""
        clock = self.services.clock
        scope = anyio.CancelScope()
        timer_scope = anyio.CancelScope()
        expired = False

        async def expire() -> None:
            nonlocal expired
            with timer_scope:
                await clock.sleep_until(deadline)
                expired = True
                scope.cancel()

        self.services.start_soon(expire)
        try:
            with scope:
                await self._enqueue(message)
                return await reply.wait()
        finally:
            timer_scope.cancel()
        if expired and not reply.done:
            raise TimeoutError
        return reply.result()

    async def send(self, export_id: int, *args: Any) -> None:
        """Queue a call of ``export_id`` without waiting for it; returns once accepted."""
        await self._enqueue(Message(export_id, args))

    def send_nowait(self, export_id: int, *args: Any) -> None:
        """Queue a call of ``export_id`` from synchronous code; MailboxFull if there is no room.

        For host functions that forward messages during another actor's turn:
        the message is queued at once, in call order, without a task in between
        (so a virtual-clock simulation stays deterministic on any event loop).
        Raises MailboxFull when the mailbox is full, whatever the overflow policy.
        """
        self._put_nowait(Message(export_id=export_id, args=args))

    def submit(self, export_id: int, *args: Any) -> Reply:
        """Queue a call of ``export_id`` now, in call order, and return where its outcome arrives.

        ``await reply.wait()`` gives the result (a plain Python copy) or raises
        the turn's error; ``reply.done`` tells whether it ran.  Raises
        MailboxFull when the mailbox is full, whatever the overflow policy.
        """
        reply = Reply()
        self._put_nowait(Message(export_id=export_id, args=args, reply=reply))
        return reply

    def _put_nowait(self, message: Message) -> None:
        self._check(message)
        if self.cell.full():
            raise self._mailbox_full()
        self.cell.mail().append(message)
        self.services.schedule(self)

    async def _enqueue(self, message: Message) -> None:
        self._check(message)
        cell = self.cell
        if cell.full():
            await self._room()
        cell.mail().append(message)
        self.services.schedule(self)

    async def _room(self) -> None:
        """Wait until the mailbox has room (MailboxFull at once under the "raise" policy)."""
        cell = self.cell
        while cell.full():
            if cell.overflow == "raise":
                raise self._mailbox_full()
            await cell.room()
            self._check_alive()  # the actor may have failed while we waited

    async def upgrade(self, snapshot: SnapshotLike, migrate: tuple[int, int] | None = None,
                      timeout: float | None = None) -> None:
        """Run new code from here on, in mailbox order: messages sent before run on the old code, after on
        the new (the mechanism ``Client.upgrade`` uses in a cluster).

        With ``migrate=(OUT, IN)``, export OUT on the old code gives a plain value (copied), then the new
        snapshot is restored and export IN(value) runs on it; without, the new snapshot's own state
        replaces the old.  Atomic: if OUT/IN throws, the snapshot does not restore, or a host call or
        timer is pending when its turn comes, the actor keeps its old code and state and
        :class:`mvactors.UpgradeFailed` says why.  ``timeout`` bounds the wait for its turn (seconds).
        """
        data = snapshot_bytes(snapshot)
        if migrate is not None:
            if (not isinstance(migrate, tuple) or len(migrate) != 2
                    or not all(isinstance(x, int) and not isinstance(x, bool) for x in migrate)):
                raise TypeError(f"migrate must be (OUT, IN): two export IDs, not {migrate!r}")
            exports = export_ids(self.cell.record(collect=False).snapshot)
            if migrate[0] not in exports:
                raise UpgradeFailed(f"actor {self.id}'s code has no export {migrate[0]} (migrate OUT); its exports "
                                    f"are {sorted(exports)}")
            if migrate[1] not in export_ids(data):
                raise UpgradeFailed(f"the new snapshot has no export {migrate[1]} (migrate IN); its exports are "
                                    f"{sorted(export_ids(data))}")
        reply = Reply()
        message = Message(export_id=UPGRADE, args=(data, migrate), reply=reply)
        self._check_alive()
        with anyio.fail_after(timeout) if timeout is not None else contextlib.nullcontext():
            cell = self.cell
            while cell.full():
                await cell.room()
                self._check_alive()
            cell.mail().append(message)
            self.services.schedule(self)
            await reply.wait()

    def deliver(self, token: int, ok: bool, value: Any) -> None:
        """Hand the outcome of async host call ``token`` to the actor (for HostCalls implementations).

        ``ok`` fulfils the guest's promise with ``value``, else rejects it.
        Ignored when nothing awaits ``token`` any more (failed, evicted, delivered).
        """
        if self.cell.deliver(token, ok, value):
            self.services.schedule(self)

    def _check(self, message: Message) -> None:
        self._check_alive()
        check_message(message.export_id, message.args)

    def _check_alive(self) -> None:
        cell = self.cell
        if cell.evicted:
            raise ActorEvicted(f"actor {self.id} was evicted from this runtime")
        if cell.failure is not None:
            raise ActorFailed(f"actor {self.id} failed: {cell.failure}")
        if not self.services.running:
            raise RuntimeNotRunning(f"actor {self.id}'s runtime is not running")

    def _mailbox_full(self) -> MailboxFull:
        return MailboxFull(f"actor {self.id}'s mailbox is full ({self.cell.mailbox_size} messages)")

    # ---- gas, residency, records ----

    async def resume(self, extra_gas: int | None = None) -> None:
        """Re-run the paused turn, with ``extra_gas`` instructions (default: the per-turn budget).

        After a ``"quota"`` pause, ``extra_gas`` is also added to the quota; after a
        ``"per_turn"`` pause it is this turn's budget only (still within the quota).
        """
        if self.cell.pause is None:
            raise ActorError(f"actor {self.id} is not paused (state {self.state})", "MVA_NOT_PAUSED")
        if extra_gas is not None and (
                not isinstance(extra_gas, int) or isinstance(extra_gas, bool) or not 0 < extra_gas <= 0x7FFFFFFF):
            raise ValueError(f"extra_gas must be a positive int below 2**31, got {extra_gas!r}")
        self.cell.resume(extra_gas)
        self.services.schedule(self)
        await anyio.lowlevel.checkpoint()

    async def cancel_paused(self) -> None:
        """Drop the message whose turn ran out of gas: its caller gets :class:`mvactors.Cancelled`,
        and the actor goes on with the next message (ActorError if it is not paused, or paused in
        the completion of a host call, which guest code awaits: resume that one)."""
        self.cell.cancel_paused()
        self.services.schedule(self)
        await anyio.lowlevel.checkpoint()

    def grant_gas(self, extra_gas: int | None = None, *, reason: PauseReason = "per_turn",
                  refill: bool = False) -> None:
        """Give the next turn what :meth:`resume` would, for an actor that paused in another process
        (a cluster worker adopting it after ``client.resume``): ``extra_gas`` instructions (added
        to the quota too with ``reason="quota"``), and with ``refill`` a full quota bucket."""
        if extra_gas is not None and (
                not isinstance(extra_gas, int) or isinstance(extra_gas, bool) or not 0 < extra_gas <= 0x7FFFFFFF):
            raise ValueError(f"extra_gas must be a positive int below 2**31, got {extra_gas!r}")
        self.cell.grant_gas(extra_gas, reason, refill)

    async def hibernate(self) -> None:
        """Snapshot the VM to bytes and release its instance now (also with queued mail or paused)."""
        self.services.hibernate(self)
        await anyio.lowlevel.checkpoint()

    def record(self, *, collect: bool | None = True) -> ActorRecord:
        """The actor's state now, between turns, as an ActorRecord (the VM stays resident).

        Queued messages are not part of it; awaited host calls and sleeps are.  ``collect``:
        garbage-collect first (True), only when the heap grew by a quarter since the last
        collection (None: cheaper for a record taken every turn), or never (False).
        """
        self._check_alive()
        return self.cell.record(collect)

    def awaiting(self) -> dict[int, Reply]:
        """The callers whose async exports have not settled, by the key :meth:`record` keeps each
        promise under (call it with ``record()``, between turns, to know which caller a key is).

        Another runtime that adopts the record gets a caller for a key with :meth:`reply_for`.
        """
        self._check_alive()
        return self.cell.awaiting()

    def reply_for(self, key: int) -> Reply:
        """Wait, here, on the promise the adopted record kept under ``key`` (a key of the
        recording actor's :meth:`awaiting`): the Reply is answered when the promise settles.

        Claim right after ``adopt``: promises nobody claims are dropped when the actor next
        hibernates.  Raises ActorError ``MVA_NO_SUCH_PROMISE`` for a key with no such promise
        (never kept, already claimed, or dropped).
        """
        self._check_alive()
        return self.cell.reply_for(key)

    async def checkpoint(self) -> None:
        """Save this actor's record to the runtime's store (ActorFailed if it failed)."""
        store = self.runtime.store
        if store is None:
            raise ActorError("the runtime has no store; pass store= to Runtime", "MVA_NO_STORE")
        await store.save(self.id, self.record().encode())

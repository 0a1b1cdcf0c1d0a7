"""Actors: one VM, one mailbox, one turn at a time.

A turn is one delivered message (a call of an export, or the completion of an
asynchronous host call) plus everything the guest's job queue runs before it
goes idle.  Turns of one actor never overlap; the runtime interleaves actors.
"""

from __future__ import annotations

import math
import time
from array import array
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import anyio
import msgpack

from ..errors import GasExhausted, GuestError, MicroviumError, VMUnusable
from ..imports import RuntimeImport
from ..vm import VM, Hibernation, check_args, is_async_import
from ..vm.values import GuestFunction, GuestPromise, GuestRef
from .clock import WallClock

if TYPE_CHECKING:
    from .runtime import Runtime

_LATENCY_WINDOW = 128

ActorState = Literal["idle", "running", "paused", "hibernated", "failed"]


class MailboxFull(MicroviumError):
    """The actor's mailbox is at capacity and the overflow policy is ``"raise"``."""


class ActorFailed(MicroviumError):
    """The actor hit a fatal engine error it could not roll back from."""


@dataclass(frozen=True)
class GasPolicy:
    """Instruction budgets: ``per_turn`` caps each turn, ``quota`` caps the actor's total.

    When a turn runs out, it is rolled back and the actor pauses until
    :meth:`Actor.resume`.  ``None`` means unlimited.  With ``refill_per_second``
    the quota is a bucket that refills at that rate on the runtime's clock (up
    to ``quota``), and an actor paused on its quota resumes by itself once the
    bucket is full again: a steady CPU allowance per device.
    """

    per_turn: int | None = None
    quota: int | None = None
    refill_per_second: float | None = None

    def __post_init__(self) -> None:
        for name in ("per_turn", "quota"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value <= 0 or value > 0x7FFFFFFF):
                raise ValueError(f"GasPolicy.{name} must be a positive int below 2**31 or None, got {value!r}")
        rate = self.refill_per_second
        if rate is not None:
            if self.quota is None:
                raise ValueError("GasPolicy.refill_per_second refills the quota: set quota too")
            if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not 0 < rate < math.inf:
                raise ValueError(f"GasPolicy.refill_per_second must be a positive number, got {rate!r}")

    @property
    def active(self) -> bool:
        return self.per_turn is not None or self.quota is not None


@dataclass(frozen=True)
class HostCallRecord:
    """A synchronous host call a rolled-back turn already made (its effects were not undone)."""

    import_id: int
    args: tuple[Any, ...]


@dataclass(frozen=True)
class PauseEvent:
    """Why an actor paused: the turn that ran out of gas was rolled back and waits at the head of the mailbox."""

    reason: Literal["per_turn", "quota"]
    message: str  # description of the message whose turn was rolled back
    host_calls: tuple[HostCallRecord, ...]
    gas_budget: int


class Reply:
    """Where a caller waits for the outcome of its message."""

    __slots__ = ("_error", "_event", "_outcome", "done")

    def __init__(self) -> None:
        self._event: anyio.Event | None = None
        self._outcome: Any = None
        self._error: BaseException | None = None
        self.done = False

    def resolve(self, value: Any) -> None:
        if not self.done:
            self.done = True
            self._outcome = value
            if self._event is not None:
                self._event.set()

    def fail(self, error: BaseException) -> None:
        if not self.done:
            self.done = True
            self._error = error
            if self._event is not None:
                self._event.set()

    async def wait(self) -> Any:
        if not self.done:
            if self._event is None:
                self._event = anyio.Event()
            await self._event.wait()
        return self.result()

    def result(self) -> Any:
        """The outcome of a done reply (raises the turn's error)."""
        if self._error is not None:
            raise self._error
        return self._outcome


@dataclass(eq=False)  # mailbox operations compare by identity, never by arguments
class Message:
    """A mailbox entry: a call of ``export_id`` or the completion of async host call ``token``."""

    export_id: int = -1
    args: tuple[Any, ...] = ()
    reply: Reply | None = None
    token: int = 0
    ok: bool = True
    value: Any = None

    @property
    def is_completion(self) -> bool:
        return self.token != 0

    def describe(self) -> str:
        if self.is_completion:
            return f"completion of async host call {self.token}"
        return f"call of export {self.export_id}"


def plain(value: Any) -> Any:
    """A Python copy of a guest value that outlives the VM (functions stay proxies)."""
    if isinstance(value, GuestRef) and not isinstance(value, GuestFunction):
        return value.to_python()
    return value


@dataclass(slots=True)
class ActorMetrics:
    """Counters and turn latencies of one actor."""

    turns: int = 0
    gas_used: int = 0
    pauses: int = 0
    hibernations: int = 0
    rehydrations: int = 0
    failed_turns: int = 0
    # The last _LATENCY_WINDOW turn latencies (seconds), a ring allocated at the first turn:
    # at most ~1 KB per actor however long it runs (a fleet has tens of thousands).
    latencies: array[float] | None = None
    last_latency: float = math.nan
    mailbox: deque[Any] | None = field(default=None, repr=False, compare=False)  # the actor's, for its depth

    @property
    def mailbox_depth(self) -> int:
        """Messages waiting (including a paused turn's)."""
        return len(self.mailbox) if self.mailbox is not None else 0

    def record_latency(self, seconds: float) -> None:
        self.last_latency = seconds
        ring = self.latencies
        if ring is None:
            ring = self.latencies = array("d")
        if len(ring) < _LATENCY_WINDOW:
            ring.append(seconds)
        else:
            ring[(self.turns - 1) % _LATENCY_WINDOW] = seconds  # turns already counts this one

    def turn_latency(self, p: float) -> float:
        """The ``p``-th percentile of recent turn latencies, in seconds (NaN before the first turn)."""
        return percentile(sorted(self.latencies or ()), p)

    def snapshot(self) -> dict[str, Any]:
        lat = sorted(self.latencies or ())
        return {
            "turns": self.turns,
            "gas_used": self.gas_used,
            "pauses": self.pauses,
            "hibernations": self.hibernations,
            "rehydrations": self.rehydrations,
            "failed_turns": self.failed_turns,
            "mailbox_depth": self.mailbox_depth,
            "turn_latency_p50_us": percentile(lat, 50) * 1e6,
            "turn_latency_p99_us": percentile(lat, 99) * 1e6,
        }


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return math.nan
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


@dataclass
class PendingAsync:
    """An asynchronous host call the guest awaits, kept so it can be re-issued after a restore."""

    import_id: int
    args: tuple[Any, ...]
    due: float | None = None  # for sleeps: when it fires on the runtime clock


class _NoMail(deque):  # type: ignore[type-arg]
    """The empty mailbox of a hibernated actor, shared: adding to it is a bug (use Actor._mail())."""

    def append(self, item: Any) -> None:
        raise AssertionError("a hibernated actor's shared empty mailbox was written to")

    appendleft = extend = extendleft = insert = append  # type: ignore[assignment]


_NO_MAIL: deque[Any] = _NoMail()
_NO_PROMISES: dict[int, Any] = {}  # read-only by convention: replaced, never mutated, while hibernated


class Actor:
    """A guest VM with a mailbox, run by a :class:`~mvactors.Runtime`.

    Get one from ``await rt.spawn(...)``.  Results of :meth:`call` are plain
    Python copies of guest values (the VM may hibernate between turns).
    """

    # A fleet keeps up to millions of these, most hibernated: no per-instance dict.
    __slots__ = (
        "__weakref__",
        "_extra_gas",
        "_imports",
        "_next_call_id",
        "_pending_async",
        "_promises",
        "_record",
        "_refilled_at",
        "_running",
        "_space",
        "_token_owner",
        "_turn_async",
        "_turn_host_calls",
        "_vm",
        "_vm_imports",
        "_waiting",
        "failure",
        "gas",
        "id",
        "last_active",
        "mailbox",
        "mailbox_size",
        "metrics",
        "overflow",
        "pause",
        "quota_left",
        "runtime",
        "scheduled",
    )

    def __init__(self, runtime: Runtime, actor_id: str, imports: Mapping[int, Callable[..., Any]],
                 gas: GasPolicy, mailbox_size: int | None, overflow: Literal["wait", "raise"]) -> None:
        self.runtime = runtime
        self.id = actor_id
        self.gas = gas
        self.quota_left: int | None = gas.quota
        self._refilled_at = runtime.clock.now()
        self.mailbox: deque[Message] = deque()
        self.mailbox_size = mailbox_size
        self.overflow = overflow
        self.metrics = ActorMetrics(mailbox=self.mailbox)
        self.pause: PauseEvent | None = None
        self.failure: BaseException | None = None
        # Shared, not copied: the runtime hands every actor with the same map the same dict.
        self._imports = imports
        self._vm_imports = self._wrap_imports(imports)
        self._vm: VM | None = None
        self._record: bytes | None = None
        self._promises: dict[int, GuestPromise] = {}  # call id -> guest promise being awaited
        self._waiting: dict[int, Reply] = {}  # call id -> caller waiting on that promise
        self._token_owner: dict[int, int] = {}  # async host call token -> call id whose chain awaits it
        self._pending_async: dict[int, PendingAsync] = {}
        self._turn_async: list[tuple[int, int, Callable[..., Any], list[Any]]] = []
        self._turn_host_calls: list[HostCallRecord] = []
        self._next_call_id = 1
        self._extra_gas: int | None = None
        self._space: anyio.Event | None = None
        self._running = False
        self.scheduled = False
        self.last_active = 0.0

    # ---- public API ----

    @property
    def state(self) -> ActorState:
        """``"idle"``, ``"running"``, ``"paused"``, ``"hibernated"`` or ``"failed"``."""
        if self.failure is not None:
            return "failed"
        if self._running:
            return "running"
        if self.pause is not None:
            return "paused"
        if self._vm is None:
            return "hibernated"
        return "idle"

    @property
    def mailbox_depth(self) -> int:
        return len(self.mailbox)

    async def call(self, export_id: int, *args: Any, timeout: float | None = None) -> Any:
        """Run export ``export_id`` with ``args`` in a turn; returns its result.

        A guest async function's promise is awaited.  Raises GuestError when the
        guest throws or rejects.  On timeout or cancellation before the turn
        starts, the message is withdrawn (never applied).  ``timeout`` is in
        seconds of the runtime's clock (simulated seconds on a virtual clock).
        """
        reply = Reply()
        message = Message(export_id=export_id, args=args, reply=reply)
        runtime = self.runtime
        if timeout is None and runtime._can_run_inline(self):
            self._check_message(message)
            self._mail().append(message)
            runtime._turn(self)
            if runtime.max_resident is not None or runtime.hibernate_after is not None:
                runtime._wake_scheduler()  # it enforces residency when idle, off the caller's path
            # A cancellation point (and a turn of the loop for others) as the scheduled path has.
            await anyio.lowlevel.checkpoint()
            return await reply.wait()
        try:
            if timeout is None:
                await self._enqueue(message)
                return await reply.wait()
            # The timeout covers waiting for mailbox space too.
            if isinstance(self.runtime.clock, WallClock):
                with anyio.fail_after(timeout):
                    await self._enqueue(message)
                    return await reply.wait()
            return await self._call_until(message, reply, self.runtime.clock.now() + timeout)
        except BaseException as exc:
            if reply.done and isinstance(exc, TimeoutError):
                # The deadline raced with the reply: the turn ran, so report its outcome.
                return reply.result()
            self._withdraw(message)
            raise

    async def _call_until(self, message: Message, reply: Reply, deadline: float) -> Any:
        """A call with its deadline on the runtime's clock (simulated seconds on a virtual clock)."""
        clock = self.runtime.clock
        scope = anyio.CancelScope()
        timer_scope = anyio.CancelScope()
        expired = False

        async def expire() -> None:
            nonlocal expired
            with timer_scope:
                await clock.sleep_until(deadline)
                expired = True
                scope.cancel()

        self.runtime._task_group().start_soon(expire)
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
        await self._enqueue(Message(export_id=export_id, args=args))

    def send_nowait(self, export_id: int, *args: Any) -> None:
        """Queue a call of ``export_id`` from synchronous code; MailboxFull if there is no room.

        For host functions that forward messages during another actor's turn:
        the message is queued at once, in call order, without a task in between
        (so a virtual-clock simulation stays deterministic on any event loop).
        Raises MailboxFull when the mailbox is full, whatever the overflow policy.
        """
        message = Message(export_id=export_id, args=args)
        self._check_message(message)
        if self._full():
            raise self._mailbox_full()
        self._accept(message)

    async def resume(self, extra_gas: int | None = None) -> None:
        """Re-run the paused turn, with ``extra_gas`` instructions (default: the per-turn budget).

        After a ``"quota"`` pause, ``extra_gas`` is also added to the quota; after a
        ``"per_turn"`` pause it is this turn's budget only (still within the quota).
        """
        pause = self.pause
        if pause is None:
            raise MicroviumError(f"actor {self.id} is not paused (state {self.state})", "MVM_E_INVALID_ARGUMENTS")
        if extra_gas is not None and (
                not isinstance(extra_gas, int) or isinstance(extra_gas, bool) or not 0 < extra_gas <= 0x7FFFFFFF):
            raise ValueError(f"extra_gas must be a positive int below 2**31, got {extra_gas!r}")
        self._extra_gas = extra_gas
        if extra_gas is not None and self.quota_left is not None and pause.reason == "quota":
            self.quota_left += extra_gas
        self.pause = None
        self.runtime._schedule(self)
        await anyio.lowlevel.checkpoint()

    def _refilled(self) -> None:
        """The quota bucket is full again after a quota pause: re-run the paused turn."""
        pause = self.pause
        if pause is None or pause.reason != "quota" or self.failure is not None:
            return  # resumed by hand meanwhile
        self._refill()
        self.pause = None
        self.runtime._schedule(self)

    async def hibernate(self) -> None:
        """Snapshot the VM to bytes and release its instance now (also with queued mail or paused)."""
        self.runtime._hibernate(self)
        await anyio.lowlevel.checkpoint()

    async def checkpoint(self) -> None:
        """Save this actor's durable record to the runtime's store (ActorFailed if it failed)."""
        store = self.runtime.store
        if store is None:
            raise MicroviumError("the runtime has no store; pass store= to Runtime", "MVM_E_INVALID_ARGUMENTS")
        await store.save(self.id, self.durable_record())

    def __repr__(self) -> str:
        return f"<Actor {self.id} {self.state} mailbox={len(self.mailbox)}>"

    # ---- mailbox ----

    def _check_alive(self) -> None:
        if self.failure is not None:
            raise ActorFailed(f"actor {self.id} failed: {self.failure}", "MVM_E_FATAL_ERROR_MUST_KILL_VM")
        if self.runtime._tg is None:
            raise MicroviumError(f"actor {self.id}'s runtime is not running", "MVM_E_REQUIRES_ACTIVE_VM")

    def _runtime_stopped(self) -> None:
        """The runtime exited: callers still waiting get an error instead of waiting forever."""
        error = MicroviumError(f"the runtime stopped before actor {self.id} answered", "MVM_E_REQUIRES_ACTIVE_VM")
        for message in self.mailbox:
            if message.reply is not None:
                message.reply.fail(error)
        self.mailbox.clear()
        for reply in self._waiting.values():
            reply.fail(error)
        self._waiting.clear()
        self._promises.clear()
        self._signal_space()

    def _check_message(self, message: Message) -> None:
        self._check_alive()
        if not isinstance(message.export_id, int) or isinstance(message.export_id, bool):
            raise TypeError(f"export IDs are ints, not {type(message.export_id).__name__}")
        check_args(message.args)

    def _full(self) -> bool:
        return self.mailbox_size is not None and len(self.mailbox) >= self.mailbox_size

    def _mailbox_full(self) -> MailboxFull:
        return MailboxFull(f"actor {self.id}'s mailbox is full ({self.mailbox_size} messages)",
                           "MVM_E_INVALID_ARGUMENTS")

    def _mail(self) -> deque[Message]:
        """The mailbox, for adding to it (a hibernated actor with no mail holds none)."""
        mailbox = self.mailbox
        if mailbox is _NO_MAIL:
            mailbox = self.mailbox = self.metrics.mailbox = deque()
        return mailbox

    def _accept(self, message: Message) -> None:
        self._mail().append(message)
        self.runtime._schedule(self)

    async def _enqueue(self, message: Message) -> None:
        self._check_message(message)
        while self._full():
            if self.overflow == "raise":
                raise self._mailbox_full()
            if self._space is None:
                self._space = anyio.Event()
            await self._space.wait()
            self._check_alive()  # the actor may have failed while we waited
        self._accept(message)

    def _deliver_completion(self, token: int, ok: bool, value: Any) -> None:
        """Queue the completion of async host call ``token`` (never blocks: capacity is for senders)."""
        if self.failure is not None or token not in self._pending_async:
            return
        self._mail().append(Message(token=token, ok=ok, value=value))
        self.runtime._schedule(self)

    def _withdraw(self, message: Message) -> None:
        if not (self._running and self.mailbox and self.mailbox[0] is message):
            for queued in self.mailbox:
                if queued is message:
                    self.mailbox.remove(message)  # identity: Message compares by identity
                    self._signal_space()
                    break
        for call_id, reply in list(self._waiting.items()):
            if reply is message.reply:
                del self._waiting[call_id]
                promise = self._promises.pop(call_id, None)
                del promise

    def _signal_space(self) -> None:
        if self._space is not None:
            self._space.set()
            self._space = None

    # ---- residency ----

    def _wrap_imports(self, imports: Mapping[int, Callable[..., Any]]) -> Mapping[int, Callable[..., Any]]:
        if not self.gas.active:
            return imports
        # With gas, a turn can be rolled back: record the synchronous host calls it made.
        wrapped: dict[int, Callable[..., Any]] = {}
        for import_id, fn in imports.items():
            if isinstance(fn, RuntimeImport) or is_async_import(fn):
                wrapped[import_id] = fn
            else:
                wrapped[import_id] = self._recording(import_id, fn)
        return wrapped

    def _recording(self, import_id: int, fn: Callable[..., Any]) -> Callable[..., Any]:
        def record(*args: Any) -> Any:
            self._turn_host_calls.append(HostCallRecord(import_id, tuple(plain(a) for a in args)))
            return fn(*args)

        return record

    def _attach(self, vm: VM) -> VM:
        vm.async_handler = self._on_async_call
        self._vm = vm
        return vm

    def _ensure_vm(self) -> VM:
        vm = self._vm
        if vm is not None:
            return vm
        assert self._record is not None
        hibernation, _ = decode_record(self._record)
        vm, refs = VM.wake(hibernation, self._vm_imports)
        self._record = None
        self._promises = {int(k): v for k, v in refs.items()}
        self.metrics.rehydrations += 1
        self.runtime._resident_added(self)
        return self._attach(vm)

    def _hibernate_now(self) -> bool:
        # Queued mail and a paused turn are fine: the next turn wakes the VM from the record.
        vm = self._vm
        if vm is None or self._running or self.failure is not None:
            return False
        try:
            hibernation = vm.hibernate(keep=self._promises)
        except MicroviumError:
            return False  # cannot be snapshotted right now: stays resident
        self._record = encode_record(hibernation, self)
        self._promises = _NO_PROMISES
        if not self.mailbox:
            # An empty deque still holds a ~760 B block; a hibernated actor drops it.
            self.mailbox = self.metrics.mailbox = _NO_MAIL
        vm.close()
        self._vm = None
        self.metrics.hibernations += 1
        return True

    def durable_record(self) -> bytes:
        """Snapshot plus pending work, for a checkpoint store (the VM stays resident)."""
        self._check_alive()
        if self._vm is None:
            assert self._record is not None
            # Re-encoded: sleeps' remaining time and the quota are as of now, not as of hibernation.
            hibernation, _ = decode_record(self._record)
            return encode_record(hibernation, self)
        return encode_record(self._vm.hibernate(keep=self._promises), self)

    # ---- turns (called by the runtime's scheduler) ----

    def _on_async_call(self, token: int, import_id: int, fn: Callable[..., Any], args: list[Any]) -> None:
        # Started only when the turn commits: a rolled-back turn must leave nothing running.
        self._turn_async.append((token, import_id, fn, args))

    def run_turn(self) -> None:
        """Process the message at the head of the mailbox (synchronously)."""
        message = self.mailbox[0]
        try:
            vm = self._ensure_vm()
        except MicroviumError as exc:
            self._fail_actor(exc)
            return
        # With gas, a turn that runs out is undone: copy the VM's used memory aside (cheap).
        savepoint = vm.savepoint() if self.gas.active else None
        budget = self._turn_budget()
        if budget is not None:
            vm.stop_after_n_instructions(budget)
        self._turn_async.clear()
        self._turn_host_calls.clear()
        token = message.token
        # The call whose awaited chain this completion continues (its caller waits on the result).
        owner = self._token_owner.pop(token, None) if message.is_completion else None
        pending = self._pending_async.pop(token, None) if message.is_completion else None
        self._running = True
        started = time.perf_counter()
        result: Any = None
        error: BaseException | None = None
        try:
            if message.is_completion:
                vm.resolve_async(token, message.ok, message.value)
            else:
                result = vm.exports[message.export_id](*message.args)
        except GasExhausted:
            self._running = False
            assert savepoint is not None and budget is not None
            vm.rollback(savepoint)
            self._turn_async.clear()
            if message.is_completion:  # it is delivered again on resume
                if pending is not None:
                    self._pending_async[token] = pending
                if owner is not None:
                    self._token_owner[token] = owner
            reason: Literal["per_turn", "quota"] = (
                "quota" if self.quota_left is not None and budget >= self.quota_left else "per_turn")
            self.pause = PauseEvent(reason, message.describe(), tuple(self._turn_host_calls), budget)
            self.metrics.pauses += 1
            self.runtime._on_pause(self)
            return
        except VMUnusable as exc:
            self._running = False
            if savepoint is None:
                # The engine discarded the instance and there is nothing to roll back to.
                self.mailbox.popleft()
                if message.reply is not None:
                    message.reply.fail(exc)
                self._fail_actor(exc)
                return
            # A metered turn is undone even after a fatal error (out of memory, say): the
            # VM comes back from the savepoint in a fresh instance, and only this message
            # fails (for a completion, the caller awaiting that chain gets the error).
            vm.rollback(savepoint)
            self._turn_async.clear()
            error = exc
        except GuestError as exc:
            error = exc
            try:
                # A plain copy: the proxy dies when the VM hibernates or rolls back.
                error = GuestError(plain(exc.value))
                error.__cause__ = exc.__cause__
            except Exception:
                pass
        except Exception as exc:
            error = exc
        finally:
            self._running = False
        self.mailbox.popleft()
        self._signal_space()
        self._extra_gas = None
        used = _spent(vm, budget)
        if used:
            # Failing turns spend gas too: a guest that throws cannot outrun its quota.
            self.metrics.gas_used += used
            if self.quota_left is not None:
                self.quota_left = max(0, self.quota_left - used)
        self.metrics.turns += 1
        if error is not None:
            self.metrics.failed_turns += 1
        self.metrics.record_latency(time.perf_counter() - started)
        reply = message.reply
        if reply is not None:
            if error is not None:
                reply.fail(error)
            elif isinstance(result, GuestPromise):
                owner = self._next_call_id
                self._next_call_id += 1
                self._promises[owner] = result
                self._waiting[owner] = reply
            else:
                try:
                    reply.resolve(plain(result))
                except Exception as exc:
                    reply.fail(exc)
        elif error is not None and owner is not None:
            # The continuation of an awaited chain failed (a host function raised): its
            # promise can never settle, so its caller gets the error.
            waiting = self._waiting.pop(owner, None)
            self._promises.pop(owner, None)
            if waiting is not None:
                waiting.fail(error)
            owner = None
        self._commit_async(owner)
        if self._waiting:
            self._settle_waiting()

    def _refill(self) -> None:
        """Top the quota bucket up for the time passed since the last refill."""
        rate, quota, left = self.gas.refill_per_second, self.gas.quota, self.quota_left
        if rate is None or quota is None or left is None:
            return
        now = self.runtime.clock.now()
        gained = int((now - self._refilled_at) * rate)
        if gained > 0 or left >= quota:
            self.quota_left = min(quota, left + gained)
            # Credit only whole instructions' worth of time: fractions carry over.
            self._refilled_at = now if self.quota_left >= quota else self._refilled_at + gained / rate

    def _turn_budget(self) -> int | None:
        self._refill()
        budget = self._extra_gas if self._extra_gas is not None else self.gas.per_turn
        if self.quota_left is not None:
            budget = self.quota_left if budget is None else min(budget, self.quota_left)
            budget = max(budget, 1)
        return budget

    def _commit_async(self, owner: int | None) -> None:
        runtime = self.runtime
        for token, import_id, fn, args in self._turn_async:
            if owner is not None:
                self._token_owner[token] = owner
            copied = tuple(plain(a) for a in args)
            if fn is _sleep_marker():
                ms = copied[0] if copied else 0
                delay = max(0.0, float(ms) / 1000.0) if isinstance(ms, (int, float)) else 0.0
                due = runtime.clock.now() + delay
                self._pending_async[token] = PendingAsync(import_id, copied, due)
                runtime._add_timer(self, token, due)
            else:
                self._pending_async[token] = PendingAsync(import_id, copied)
                runtime._start_host_call(self, token, fn, copied)
        self._turn_async.clear()

    def _settle_waiting(self) -> None:
        vm = self._vm
        if vm is None:
            return
        for call_id in list(self._waiting):
            promise = self._promises.get(call_id)
            if promise is None:
                continue
            state, value = vm.promise_outcome(promise)
            if state == "pending":
                continue
            reply = self._waiting.pop(call_id)
            del self._promises[call_id]
            if state == "fulfilled":
                try:
                    reply.resolve(plain(value))
                except Exception as exc:
                    reply.fail(exc)
            else:
                reply.fail(GuestError(plain(value)))

    def _fail_actor(self, exc: BaseException) -> None:
        self.failure = exc
        for message in self.mailbox:
            if message.reply is not None:
                message.reply.fail(ActorFailed(f"actor {self.id} failed: {exc}", "MVM_E_FATAL_ERROR_MUST_KILL_VM"))
        self.mailbox.clear()
        self._signal_space()  # senders blocked on a full mailbox see the failure
        for reply in self._waiting.values():
            reply.fail(ActorFailed(f"actor {self.id} failed: {exc}", "MVM_E_FATAL_ERROR_MUST_KILL_VM"))
        self._waiting.clear()
        self._promises.clear()
        self._token_owner.clear()
        if self._vm is not None:
            self._vm.close()
            self._vm = None
        self.runtime._on_failed(self)


def _spent(vm: VM, budget: int | None) -> int:
    """Instructions a turn used out of ``budget`` (0 when unmetered or unreadable)."""
    if budget is None:
        return 0
    try:
        remaining = vm.get_remaining_instructions()
    except MicroviumError:
        return 0
    return budget - remaining if 0 <= remaining <= budget else 0


def _sleep_marker() -> RuntimeImport:
    from .. import imports

    return imports.sleep


# ---- records ----

_RECORD_VERSION = 1


def encode_record(hibernation: Hibernation, actor: Actor) -> bytes:
    """Serialize a hibernation plus the actor's pending async work (msgpack).

    Sleeps are stored as the time they have left, so a record restored on
    another clock (another process) keeps its remaining delay.
    """
    now = actor.runtime.clock.now()
    pending = [
        [token, location, p.import_id, list(p.args), None if p.due is None else max(0.0, p.due - now)]
        for token, location in hibernation.async_calls.items()
        for p in [actor._pending_async.get(token, PendingAsync(0, ()))]
    ]
    packed: bytes = msgpack.packb(
        [_RECORD_VERSION, hibernation.snapshot, hibernation.next_token, pending,
         [[int(k), v] for k, v in hibernation.refs.items()], actor.quota_left],
        use_bin_type=True, default=_unpackable,
    )
    return packed


def _unpackable(value: Any) -> Any:
    # Values msgpack cannot carry (proxies of functions, ...) are recorded as None:
    # re-issuing such a host call after a restore gets None for that argument.
    return None


def decode_record(record: bytes) -> tuple[Hibernation, dict[str, Any]]:
    """Inverse of :func:`encode_record`: the hibernation and the actor metadata."""
    try:
        version, snapshot, next_token, pending, refs, quota_left = msgpack.unpackb(record, raw=False,
                                                                                   strict_map_key=False)
    except Exception as exc:
        raise MicroviumError(f"not an mvactors actor record: {exc}", "MVM_E_INVALID_BYTECODE") from None
    if version != _RECORD_VERSION:
        raise MicroviumError(f"actor record version {version} is not supported", "MVM_E_INVALID_BYTECODE")
    hibernation = Hibernation(
        snapshot=snapshot,
        async_calls={int(p[0]): int(p[1]) for p in pending},
        refs={int(k): int(v) for k, v in refs},
        next_token=int(next_token),
    )
    meta = {
        "pending": {int(p[0]): PendingAsync(int(p[2]), tuple(p[3]), p[4]) for p in pending},
        "quota_left": quota_left,
    }
    return hibernation, meta


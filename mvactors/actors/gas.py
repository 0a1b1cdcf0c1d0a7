"""Instruction budgets: the policy an actor is spawned with, and the meter that applies it turn by turn."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ..errors import MicroviumError
from .clock import Clock

if TYPE_CHECKING:
    from ..vm import VM, Savepoint


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


PauseReason = Literal["per_turn", "quota"]


@dataclass(frozen=True)
class PauseEvent:
    """Why an actor paused: the turn that ran out of gas was rolled back and waits at the head of the mailbox."""

    reason: PauseReason
    message: str  # description of the message whose turn was rolled back
    host_calls: tuple[HostCallRecord, ...]
    gas_budget: int


class GasMeter:
    """One actor's remaining quota, and the budget and savepoint of its current turn.

    Only actors with an active GasPolicy have one.  A metered turn is bracketed by
    :meth:`begin` and either :meth:`end` (it ran, or failed) or :meth:`pause` (it ran out
    and is undone).
    """

    __slots__ = ("budget", "clock", "extra", "host_calls", "policy", "quota_left", "refilled_at", "savepoint")

    def __init__(self, policy: GasPolicy, clock: Clock) -> None:
        self.policy = policy
        self.clock = clock
        self.quota_left: int | None = policy.quota
        self.refilled_at = clock.now()
        self.extra: int | None = None  # the budget of the next turn only, set by resume(extra_gas)
        self.budget = 0  # of the turn running now
        # The VM's used memory when the running turn began; None between turns (it can be KBs).
        self.savepoint: Savepoint | None = None
        # The synchronous host calls the running turn made: a rolled-back turn reports them.
        self.host_calls: list[HostCallRecord] = []

    # ---- one turn ----

    def begin(self, vm: VM) -> None:
        """A turn starts on ``vm``: set its budget, and copy the VM's used memory aside (cheap) to undo it."""
        self.savepoint = vm.savepoint()
        budget = self.budget = self.turn_budget()
        vm.stop_after_n_instructions(budget)
        self.host_calls.clear()

    def rollback(self, vm: VM) -> None:
        """Undo the running turn (the VM comes back from the savepoint, in a fresh instance if need be)."""
        assert self.savepoint is not None
        vm.rollback(self.savepoint)

    def pause(self, vm: VM, message: str) -> PauseEvent:
        """The running turn (``message`` describes it) ran out of gas: undo it and say why."""
        self.rollback(vm)
        self.savepoint = None
        budget = self.budget
        return PauseEvent(self.pause_reason(budget), message, tuple(self.host_calls), budget)

    def end(self, vm: VM) -> int:
        """The running turn ran to its end (or failed): charge and return the instructions it used."""
        self.savepoint = None
        used = _spent(vm, self.budget)
        self.turn_done(used)
        return used

    # ---- budgets and the quota ----

    def turn_budget(self) -> int:
        """Instructions the next turn may run (refilling the quota first)."""
        self.refill()
        budget = self.extra if self.extra is not None else self.policy.per_turn
        if self.quota_left is not None:
            budget = self.quota_left if budget is None else min(budget, self.quota_left)
            budget = max(budget, 1)
        assert budget is not None  # an active policy caps something
        return budget

    def turn_done(self, used: int) -> None:
        """A turn ran to its end (or failed) having used ``used`` instructions; ``extra`` was for it alone."""
        # Failing turns spend gas too: a guest that throws cannot outrun its quota.
        self.extra = None
        if self.quota_left is not None:
            self.quota_left = max(0, self.quota_left - used)

    def pause_reason(self, budget: int) -> PauseReason:
        return "quota" if self.quota_left is not None and budget >= self.quota_left else "per_turn"

    def resume(self, extra_gas: int | None, reason: PauseReason) -> None:
        self.extra = extra_gas
        if extra_gas is not None and self.quota_left is not None and reason == "quota":
            self.quota_left += extra_gas

    def refill(self) -> None:
        """Top the quota bucket up for the time passed since the last refill."""
        rate, quota, left = self.policy.refill_per_second, self.policy.quota, self.quota_left
        if rate is None or quota is None or left is None:
            return
        now = self.clock.now()
        gained = int((now - self.refilled_at) * rate)
        if gained > 0 or left >= quota:
            self.quota_left = min(quota, left + gained)
            # Credit only whole instructions' worth of time: fractions carry over.
            self.refilled_at = now if self.quota_left >= quota else self.refilled_at + gained / rate

    def full_at(self) -> float | None:
        """When a refilling quota bucket is full again (None without refills)."""
        rate, quota, left = self.policy.refill_per_second, self.policy.quota, self.quota_left
        if not rate or quota is None or left is None:
            return None
        return self.clock.now() + (quota - left) / rate


def _spent(vm: VM, budget: int) -> int:
    """Instructions a turn used out of ``budget`` (0 when unreadable)."""
    try:
        remaining = vm.get_remaining_instructions()
    except MicroviumError:
        return 0
    return budget - remaining if 0 <= remaining <= budget else 0

"""Which actors keep a live VM: the least recently active hibernate beyond ``max_resident`` or when idle."""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

from .clock import Clock

if TYPE_CHECKING:
    from .actor import Actor


class Residency:
    """Live VMs in least-recently-active order, and the policy that hibernates them."""

    def __init__(self, clock: Clock, max_resident: int | None, hibernate_after: float | None) -> None:
        self._clock = clock
        self.max_resident = max_resident
        self.hibernate_after = hibernate_after
        self.resident: OrderedDict[str, Actor] = OrderedDict()  # oldest first

    @property
    def limited(self) -> bool:
        """Whether a policy hibernates actors by itself (then recency must be tracked)."""
        return self.max_resident is not None or self.hibernate_after is not None

    def __len__(self) -> int:
        return len(self.resident)

    def added(self, actor: Actor) -> None:
        """``actor``'s VM just became live (spawn, wake, adopt): keep within ``max_resident``."""
        actor._cell.last_active = self._clock.now()
        self.resident[actor.id] = actor
        self.resident.move_to_end(actor.id)
        if self.max_resident is not None and len(self.resident) > self.max_resident:
            self._shed(len(self.resident) - self.max_resident, None, keep=actor)

    def touched(self, actor: Actor) -> None:
        """``actor`` just ran a turn (called only when a policy is set: reading the clock per turn is not free)."""
        if actor._cell.vm is not None and actor.id in self.resident:
            actor._cell.last_active = self._clock.now()
            self.resident.move_to_end(actor.id)

    def removed(self, actor: Actor) -> None:
        self.resident.pop(actor.id, None)

    def hibernate(self, actor: Actor) -> bool:
        if actor._cell.hibernate():
            self.resident.pop(actor.id, None)
            return True
        return False

    def enforce(self) -> None:
        """Hibernate least recently active actors beyond ``max_resident`` or idle ``hibernate_after``."""
        limit = self.max_resident
        if limit is None and self.hibernate_after is None:
            return
        self._shed(len(self.resident) - limit if limit is not None else 0, self.hibernate_after)

    def _shed(self, excess: int, idle_after: float | None, keep: Actor | None = None) -> None:
        """Hibernate ``excess`` actors and those idle ``idle_after`` seconds, least recently active first.

        ``resident`` is ordered by ``last_active`` (oldest first), so the scan
        stops at the first actor that is neither excess nor stale.
        """
        now = self._clock.now()
        victims: list[Actor] = []
        for actor in self.resident.values():
            cell = actor._cell
            stale = idle_after is not None and now - cell.last_active >= idle_after
            if excess <= 0 and not stale:
                break
            if actor is keep or cell.running:
                continue
            victims.append(actor)
            excess -= 1
        for actor in victims:
            if not self.hibernate(actor):
                # It cannot be snapshotted now: count it as active so it is retried later,
                # not again and again at once.
                actor._cell.last_active = now
                self.resident.move_to_end(actor.id)

    def next_idle_deadline(self) -> float | None:
        """When the least recently active resident actor reaches ``hibernate_after``."""
        if self.hibernate_after is None or not self.resident:
            return None
        oldest = next(iter(self.resident.values()))
        return oldest._cell.last_active + self.hibernate_after

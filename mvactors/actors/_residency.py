"""Which actors keep a live VM: the least recently active hibernate beyond ``max_resident`` or when idle."""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

from .clock import Clock

if TYPE_CHECKING:
    from .actor import Actor


class Residency:
    """Live VMs in least-recently-active order, and the policy that hibernates them.

    It owns when each resident actor was last active (on the runtime clock): a
    hibernated actor holds nothing for it.
    """

    def __init__(self, clock: Clock, max_resident: int | None, hibernate_after: float | None) -> None:
        self._clock = clock
        self.max_resident = max_resident
        self.hibernate_after = hibernate_after
        # actor ID -> (actor, when last active), oldest first
        self._resident: OrderedDict[str, tuple[Actor, float]] = OrderedDict()

    @property
    def limited(self) -> bool:
        """Whether a policy hibernates actors by itself (then recency must be tracked)."""
        return self.max_resident is not None or self.hibernate_after is not None

    def __len__(self) -> int:
        return len(self._resident)

    def added(self, actor: Actor) -> None:
        """``actor``'s VM just became live (spawn, wake, adopt): keep within ``max_resident``."""
        resident = self._resident
        resident[actor.id] = (actor, self._clock.now())
        resident.move_to_end(actor.id)
        if self.max_resident is not None and len(resident) > self.max_resident:
            self._shed(len(resident) - self.max_resident, None, keep=actor)

    def touched(self, actor: Actor) -> None:
        """``actor`` just ran a turn (called only when a policy is set: reading the clock per turn is not free)."""
        resident = self._resident
        if actor.cell.vm is not None and actor.id in resident:
            resident[actor.id] = (actor, self._clock.now())
            resident.move_to_end(actor.id)

    def removed(self, actor: Actor) -> None:
        self._resident.pop(actor.id, None)

    def hibernate(self, actor: Actor) -> bool:
        if actor.cell.hibernate():
            self._resident.pop(actor.id, None)
            return True
        return False

    def enforce(self) -> None:
        """Hibernate least recently active actors beyond ``max_resident`` or idle ``hibernate_after``."""
        limit = self.max_resident
        if limit is None and self.hibernate_after is None:
            return
        self._shed(len(self._resident) - limit if limit is not None else 0, self.hibernate_after)

    def _shed(self, excess: int, idle_after: float | None, keep: Actor | None = None) -> None:
        """Hibernate ``excess`` actors and those idle ``idle_after`` seconds, least recently active first.

        The resident actors are ordered by when they were last active (oldest first), so
        the scan stops at the first actor that is neither excess nor stale.
        """
        now = self._clock.now()
        victims: list[Actor] = []
        for actor, last_active in self._resident.values():
            stale = idle_after is not None and now - last_active >= idle_after
            if excess <= 0 and not stale:
                break
            if actor is keep or actor.cell.running:
                continue
            victims.append(actor)
            excess -= 1
        for actor in victims:
            if not self.hibernate(actor):
                # It cannot be snapshotted now: count it as active so it is retried later,
                # not again and again at once.
                self._resident[actor.id] = (actor, now)
                self._resident.move_to_end(actor.id)

    def next_idle_deadline(self) -> float | None:
        """When the least recently active resident actor reaches ``hibernate_after``."""
        if self.hibernate_after is None or not self._resident:
            return None
        _, last_active = next(iter(self._resident.values()))
        return last_active + self.hibernate_after

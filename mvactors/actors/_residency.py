"""Which actors keep a live VM: beyond ``max_resident`` some hibernate, as do those idle ``hibernate_after``.

Which ones the cap hibernates is the eviction policy (``Runtime(eviction=...)``):
``"lru"`` (:class:`Residency`) the least recently active, ``"segmented"``
(:class:`SegmentedResidency`) those outside an established set that scans and
cycles larger than the cap do not flush.
"""

from __future__ import annotations

from collections import OrderedDict
from itertools import chain
from typing import TYPE_CHECKING, ClassVar, Literal, get_args

from .clock import Clock

if TYPE_CHECKING:
    from .actor import Actor

Eviction = Literal["lru", "segmented"]
EVICTIONS: tuple[Eviction, ...] = get_args(Eviction)


def residency_for(eviction: Eviction, clock: Clock, max_resident: int | None,
                  hibernate_after: float | None) -> Residency:
    """The residency of the ``eviction`` policy (ValueError naming the choices for any other value)."""
    if eviction not in EVICTIONS:
        choices = " or ".join(repr(name) for name in EVICTIONS)
        raise ValueError(f"eviction must be {choices}, not {eviction!r}")
    return _KINDS[eviction](clock, max_resident, hibernate_after)


class Residency:
    """Live VMs in least-recently-active order, and the policy that hibernates them (``eviction="lru"``).

    It owns when each resident actor was last active (on the runtime clock): a
    hibernated actor holds nothing for it.  On a cycle of actors larger than
    ``max_resident`` the least recently active is exactly the one due next, so
    every turn wakes an actor (``"segmented"`` keeps most of the cap resident).
    """

    eviction: ClassVar[Eviction] = "lru"

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


class SegmentedResidency(Residency):
    """Segmented LRU (``eviction="segmented"``): an established set stays resident through scans and cycles.

    Every resident actor is in one of two segments, each kept oldest first:

    - *protected*, the established set: ``max_resident`` minus probation's share.  An actor
      that becomes resident enters it while it has room, or when it was last active, before
      it hibernated, more recently than protected's least recently active member: it has
      come back sooner than that member has been idle, and takes its place.  The member
      moves to probation's newest end (a second chance, not a hibernation).
    - *probation*, about 10% of ``max_resident`` (at least 1): every other actor that
      becomes resident (spawned, woken, adopted).

    The cap hibernates probation's oldest first, then protected's oldest.  On a cycle of N
    actors over a cap C (a fleet sampling in turn) protected's 0.9·C stay resident and the
    others pass through probation, so 0.9·C/N of the turns find their VM live (54% for
    30,000 of 50,000) where LRU hibernates exactly the actor due next (0%): the actor due
    next was active before protected's oldest, never after.  A scan of one-shot actors
    passes through probation and leaves protected as it was; a working set that moves
    takes protected over as the old members go stale.

    Turns do not promote.  The turns right after a wake are that wake's own work (a fleet
    device's timer turn is followed at once by the completion of the sensor read it
    started), so "a second turn while on probation" would promote every woken actor, and
    protected would churn like LRU (modelled on the fleet's cycle: every sample a miss).
    Hence the comparison above, at the wake: it needs when each hibernated actor was last
    active, kept for the latest ``max_resident`` to hibernate.

    Idle hibernation (``hibernate_after``) reads the recency order of all resident actors
    (the base class's), not the segments: an actor moved to probation's newest end was not
    the most recently active.
    """

    eviction: ClassVar[Eviction] = "segmented"

    def __init__(self, clock: Clock, max_resident: int | None, hibernate_after: float | None) -> None:
        super().__init__(clock, max_resident, hibernate_after)
        # actor ID -> actor, oldest first: the cap hibernates from the front of probation, then protected.
        self._probation: OrderedDict[str, Actor] = OrderedDict()
        self._protected: OrderedDict[str, Actor] = OrderedDict()
        # actor ID -> when last active, for hibernated actors (oldest first): what a wake is
        # compared with.  At most max_resident of them (~100 B each, beside a hibernated actor's
        # record of ~20 KiB).
        self._hibernated: OrderedDict[str, float] = OrderedDict()

    def _protected_share(self) -> int | None:
        limit = self.max_resident
        if limit is None:
            return None  # no cap: nothing competes for a place
        return max(0, limit - max(1, limit // 10))

    def added(self, actor: Actor) -> None:
        now = self._clock.now()
        actor_id = actor.id
        resident = self._resident
        last_active = self._hibernated.pop(actor_id, None)
        protected = self._protected
        if actor_id in resident:  # already live: only more recent
            self._segment(actor_id).move_to_end(actor_id)
        else:
            share = self._protected_share()
            if share is None or len(protected) < share:
                protected[actor_id] = actor  # room: nothing to resist yet
            elif protected and last_active is not None and last_active > resident[next(iter(protected))][1]:
                protected[actor_id] = actor
                self._demote(share)
            else:
                self._probation[actor_id] = actor
        resident[actor_id] = (actor, now)
        resident.move_to_end(actor_id)
        if self.max_resident is not None and len(resident) > self.max_resident:
            self._shed(len(resident) - self.max_resident, None, keep=actor)

    def _demote(self, share: int) -> None:
        protected, probation = self._protected, self._probation
        while len(protected) > share:
            actor_id, actor = protected.popitem(last=False)
            probation[actor_id] = actor

    def _segment(self, actor_id: str) -> OrderedDict[str, Actor]:
        return self._protected if actor_id in self._protected else self._probation

    def touched(self, actor: Actor) -> None:
        actor_id = actor.id
        resident = self._resident
        if actor.cell.vm is not None and actor_id in resident:
            resident[actor_id] = (actor, self._clock.now())
            resident.move_to_end(actor_id)
            self._segment(actor_id).move_to_end(actor_id)

    def removed(self, actor: Actor) -> None:
        self._forget(actor.id)
        self._hibernated.pop(actor.id, None)

    def hibernate(self, actor: Actor) -> bool:
        entry = self._resident.get(actor.id)
        if actor.cell.hibernate():
            self._forget(actor.id)
            if entry is not None:
                self._remember(actor.id, entry[1])
            return True
        return False

    def _forget(self, actor_id: str) -> None:
        self._resident.pop(actor_id, None)
        if self._protected.pop(actor_id, None) is None:
            self._probation.pop(actor_id, None)

    def _shed(self, excess: int, idle_after: float | None, keep: Actor | None = None) -> None:
        """Hibernate ``excess`` actors (probation's oldest, then protected's) and those idle ``idle_after`` seconds.

        Each scan stops at the first actor it does not take: the segments are in eviction
        order, the recency order is by when each actor was last active.
        """
        now = self._clock.now()
        resident = self._resident
        victims: dict[str, Actor] = {}
        if excess > 0:
            for actor_id, actor in chain(self._probation.items(), self._protected.items()):
                if actor is keep or actor.cell.running:
                    continue
                victims[actor_id] = actor
                excess -= 1
                if excess == 0:
                    break
        if idle_after is not None:
            for actor_id, (actor, last_active) in resident.items():
                if now - last_active < idle_after:
                    break
                if actor is not keep and not actor.cell.running:
                    victims[actor_id] = actor
        for actor_id, actor in victims.items():
            if not self.hibernate(actor):
                # It cannot be snapshotted now: count it as active so it is retried later,
                # not again and again at once.
                resident[actor_id] = (actor, now)
                resident.move_to_end(actor_id)
                self._segment(actor_id).move_to_end(actor_id)

    def _remember(self, actor_id: str, last_active: float) -> None:
        """Keep when hibernated ``actor_id`` was last active, for its next wake (the ``max_resident`` latest)."""
        limit = self.max_resident
        if not limit:
            return  # no cap (or nothing resident): no place to compete for
        hibernated = self._hibernated
        hibernated[actor_id] = last_active
        while len(hibernated) > limit:
            hibernated.popitem(last=False)


_KINDS: dict[Eviction, type[Residency]] = {kind.eviction: kind for kind in (Residency, SegmentedResidency)}

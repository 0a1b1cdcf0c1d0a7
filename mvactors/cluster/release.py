"""``Releases``: which quiet actors a worker hands back to Redis, and why.

An actor stays with its worker while it has work.  It goes back to Redis (it hibernates there; any
worker adopts it at its next message) once quiet for ``idle_release_s``, or a quarter lease when
the worker is at ``max_actors``.  A worker holding more than its share of the live workers' actors
sheds quiet ones, and leaves them to the others for two leases.

Releasing after a quarter lease (the rule before) made actors that receive mail every second or
so move between healthy workers, each move a rehydrate and a lease round trip: 381 owner changes
in 10 s for 200 actors messaged every 0.5 s on 2 workers (bench/cluster.py's moves row), 15-30
with these rules.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping

from .lease import Leases
from .owned import Owned


class Releases:
    """The release rules of one worker; ``yielded`` (read by Discovery) holds the actors it shed, each
    with the monotonic time before which it does not acquire them again."""

    def __init__(self, leases: Leases, lease_ms: int, idle_release_s: float, held: Mapping[str, Owned],
                 max_actors: Callable[[], int | None]) -> None:
        self.yielded: dict[str, float] = {}
        self._leases = leases
        self._grace = lease_ms / 1000 / 4
        self._yield_for = 2 * lease_ms / 1000
        self._idle_s = idle_release_s
        self._held = held
        self._max_actors = max_actors
        self._shed_beat = 0  # the heartbeat whose view of the loads the last shedding used

    def due(self, candidates: Iterable[Owned]) -> list[tuple[Owned, str]]:
        """The ``candidates`` (held actors not at an upgrade barrier) to release now, each with why.

        Tracks each one's quiet time: call it on every discovery pass."""
        now = time.monotonic()
        for actor_id in [a for a, until in self.yielded.items() if until <= now]:
            del self.yielded[actor_id]
        held = len(self._held)
        # Hysteresis: shed only beyond the fair share plus 10% (at least 2 actors), so two workers with
        # nearly equal loads do not trade actors back and forth; and at most half the excess per fresh
        # view of the others' loads (a heartbeat), as they may be taking actors meanwhile.
        fair = self._leases.fair_share()
        shed = 0
        if held - fair > max(2, fair // 10) and self._leases.beats > self._shed_beat:
            shed = max(1, (held - fair) // 2)
            self._shed_beat = self._leases.beats
        limit = self._max_actors()
        at_cap = limit is not None and held >= limit
        out: list[tuple[Owned, str]] = []
        for owned in candidates:
            if not owned.quiet() or owned.awaiting_host:
                owned.quiet_since = None
                continue
            if owned.next_due is not None and owned.next_due - time.time() < 2 * self._grace:
                continue  # a timer fires soon: keep it resident
            if owned.quiet_since is None:
                owned.quiet_since = now
                continue
            quiet_for = now - owned.quiet_since
            if quiet_for >= self._idle_s or (at_cap and quiet_for >= self._grace):
                out.append((owned, "idle"))
            elif shed > 0:
                # Any actor seen quiet on two passes: one with mail every half second is never quiet
                # for long, and it must be able to move to a worker that joined later.
                shed -= 1
                self.yielded[owned.actor_id] = now + self._yield_for
                out.append((owned, f"this worker holds more than its share of {fair} actors"))
        return out

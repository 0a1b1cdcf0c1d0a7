"""Deterministic crash points for fault tests: ``MVACTORS_CRASH_AT=point[:n]`` makes a worker
process ``os._exit(70)`` the n-th time (default 1st) it reaches ``point``.

Points: ``before-journal`` (a journaled call ran, its result is not recorded yet),
``after-journal`` (a journaled result is in Redis, the guest has not seen it),
``before-commit`` (turns ran, their commit not sent), ``before-publish`` (replica_acks: the
commit is on the replicas, its staged replies not yet readable), ``after-commit`` (committed,
nothing after it done), ``after-turn`` (a turn of any actor ran here, whatever was committed: ``:n``
picks the n-th turn this worker ran).

``MVACTORS_POISON=actor_id`` makes every record the worker takes of that actor (each commit's,
and the one a release takes) raise VMUnusable, as a heap the engine cannot snapshot would.
"""

from __future__ import annotations

import os

from ..errors import VMUnusable

CRASH_EXIT_CODE = 70

_spec = os.environ.get("MVACTORS_CRASH_AT", "")
_point, _, _nth = _spec.partition(":")
_left = int(_nth) if _nth else 1


def crash_point(name: str) -> None:
    """Exit at once (no cleanup, as kill -9 would) if the environment chose this point."""
    global _left
    if _point and name == _point:
        _left -= 1
        if _left <= 0:
            os._exit(CRASH_EXIT_CODE)


_poisoned = os.environ.get("MVACTORS_POISON", "")


def snapshot_point(actor_id: str) -> None:
    """Raise VMUnusable if the environment poisoned this actor's snapshots (a test hook)."""
    if _poisoned and actor_id == _poisoned:
        raise VMUnusable(f"test hook: every snapshot of actor {actor_id} fails (MVACTORS_POISON)")

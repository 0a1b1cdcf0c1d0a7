"""``WorkerStats``: one worker's counters (attributes: the turn path bumps one per turn)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(slots=True)
class WorkerStats:
    """Counters since the worker started; :meth:`Worker.stats` returns them as a dict."""

    acquired: int = 0
    released: int = 0
    dropped: int = 0
    commits: int = 0
    turns: int = 0
    committed_turns: int = 0
    failed: int = 0
    unawaited_failures: int = 0  # turns of a send() (no caller) that raised, or whose promise rejected

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

"""Counters and turn latencies, per actor and per runtime."""

from __future__ import annotations

import math
from array import array
from collections import deque
from dataclasses import dataclass, field
from typing import Any

_LATENCY_WINDOW = 128


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
    """The ``p``-th percentile of already sorted values (NaN for none)."""
    if not sorted_values:
        return math.nan
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]

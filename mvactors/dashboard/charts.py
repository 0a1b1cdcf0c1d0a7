"""Turns/s over the last minutes, sampled as pages are served, drawn as inline SVG.

No chart library and no script: the server draws the line, so the chart needs nothing from the
network and updates with the rest of the page.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

WINDOW_S = 600.0  # the overview shows the last 10 minutes
MIN_GAP_S = 1.0  # pages polled by several browsers add one sample a second at most


@dataclass(frozen=True)
class Point:
    at: float  # monotonic seconds
    rate: float  # turns per second since the previous sample


class TurnRate:
    """Samples of a growing turn count, and the rate between consecutive samples.

    Sampling happens when a page asks (no background task), so the app needs no lifespan hooks
    and still works mounted inside another app.  While nobody watches, nothing is sampled: the
    next sample then spans the gap, an average over it.
    """

    def __init__(self, window: float = WINDOW_S) -> None:
        self.window = window
        self._last: tuple[float, int] | None = None
        self.points: deque[Point] = deque()

    def add(self, turns: int, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        last = self._last
        if last is not None and now - last[0] < MIN_GAP_S:
            return
        if last is not None and turns >= last[1]:
            self.points.append(Point(now, (turns - last[1]) / (now - last[0])))
        # A count that went down (a restarted worker) starts a new series from here.
        self._last = (now, turns)
        while self.points and now - self.points[0].at > self.window:
            self.points.popleft()

    @property
    def current(self) -> float | None:
        return self.points[-1].rate if self.points else None


class WorkerRates:
    """turns/s per worker, from the turn counts each page read of the workers."""

    def __init__(self) -> None:
        self._meters: dict[str, TurnRate] = {}

    def add(self, worker_id: str, turns: int, now: float | None = None) -> float | None:
        meter = self._meters.setdefault(worker_id, TurnRate(window=60.0))
        meter.add(turns, now)
        return meter.current


def svg_path(points: list[Point], width: int, height: int, window: float, now: float) -> tuple[str, float]:
    """An SVG polyline's ``points`` for ``points`` (x: the last ``window`` seconds; y: from 0 to the maximum),
    and that maximum.  The y-axis starts at 0 so small changes look small."""
    top = max((p.rate for p in points), default=0.0)
    scale = top if top > 0 else 1.0
    coords = []
    for p in points:
        x = width * (1 - min(window, now - p.at) / window)
        y = height * (1 - p.rate / scale)
        coords.append(f"{x:.1f},{y:.1f}")
    return " ".join(coords), top


__all__ = ["MIN_GAP_S", "WINDOW_S", "Point", "TurnRate", "WorkerRates", "svg_path"]

"""The simulated hardware of a fleet device: its room, sensor and relay (shared by run.py and the workers).

run.py builds one Room per device on the runtime's virtual clock.  With ``--workers N`` the
devices run in ``mvactors worker`` processes, which import this module as
``--imports devices:IMPORTS``: one import table per device (its own sensor and relay), built
from the environment run.py gives them ($FLEET_DEVICES, $FLEET_SEED, $FLEET_EPOCH).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import mvactors.imports


class Clock(Protocol):
    def now(self) -> float: ...


# Export and import IDs of thermostat.js.
RUN, CONFIGURE, STATUS = 1, 2, 3
READ_TEMPERATURE, SET_OUTPUT, SLEEP = 2, 3, 9
STATE_NAMES = ("IDLE", "HEATING", "COOLING")


_MASK64 = (1 << 64) - 1


class SplitMix64:
    """A tiny deterministic generator: one int of state per device instead of
    random.Random's 2.5 KB, which would otherwise be a visible share of each
    simulated device's memory next to its VM."""

    __slots__ = ("state",)

    def __init__(self, seed: int) -> None:
        self.state = seed & _MASK64

    def next64(self) -> int:
        self.state = z = (self.state + 0x9E3779B97F4A7C15) & _MASK64
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        return z ^ (z >> 31)

    def random(self) -> float:
        return (self.next64() >> 11) * (1.0 / (1 << 53))

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * self.random()

    def randrange(self, n: int) -> int:
        return int(self.random() * n)

    def gauss(self, mu: float, sigma: float) -> float:
        # Box-Muller; 1 - u keeps the logarithm's argument in (0, 1].
        u, v = 1.0 - self.random(), self.random()
        return mu + sigma * math.sqrt(-2.0 * math.log(u)) * math.cos(2.0 * math.pi * v)


class SensorFault(Exception):
    """A simulated failed sensor read (the guest sees a rejected promise)."""


@dataclass(slots=True)
class Room:
    """A first-order thermal model of the room a device sits in.

    Temperature relaxes toward the outside temperature plus whatever the
    relay adds; integrating exactly from the last event keeps the result
    independent of how often it is read.
    """

    clock: Clock
    rng: SplitMix64
    temperature: float
    outside_mean: float
    outside_swing: float
    day_phase: float
    leak_per_s: float  # 1/s: how fast the room follows the outside
    heat_c: float  # degrees of equilibrium shift with the heater on
    cool_c: float
    fault_rate: float
    mode: int = 0
    updated: float = 0.0
    relay_switches: int = 0
    reads: int = 0
    faults: int = 0

    def outside(self, t: float) -> float:
        return self.outside_mean + self.outside_swing * math.sin(2 * math.pi * (t / 86400.0 + self.day_phase))

    def advance(self) -> None:
        now = self.clock.now()
        dt = now - self.updated
        if dt <= 0:
            return
        # Outside temperature sampled at the midpoint: the interval is at most
        # a sampling period, far shorter than the daily cycle.
        target = self.outside(self.updated + dt / 2)
        if self.mode == 1:
            target += self.heat_c
        elif self.mode == 2:
            target -= self.cool_c
        self.temperature = target + (self.temperature - target) * math.exp(-self.leak_per_s * dt)
        self.updated = now

    async def read_temperature(self) -> float:
        self.advance()
        self.reads += 1
        if self.rng.random() < self.fault_rate:
            self.faults += 1
            raise SensorFault("sensor did not answer")
        # A 0.01 °C resolution sensor with a little noise.
        return round(self.temperature + self.rng.gauss(0.0, 0.05), 2)

    def set_output(self, mode: Any) -> None:
        self.advance()
        self.mode = int(mode)
        self.relay_switches += 1


def make_room(clock: Clock, seed: int, device: int) -> tuple[Room, SplitMix64]:
    # One generator per device, seeded from (seed, device): the device's
    # inputs do not depend on how the scheduler interleaves devices.
    rng = SplitMix64(seed * 1_000_003 + device)
    room = Room(
        clock=clock,
        rng=rng,
        temperature=rng.uniform(14.0, 28.0),
        outside_mean=rng.uniform(-5.0, 35.0),
        outside_swing=rng.uniform(2.0, 8.0),
        day_phase=rng.random(),
        leak_per_s=1.0 / rng.uniform(3600.0, 4 * 3600.0),
        heat_c=rng.uniform(25.0, 40.0),
        cool_c=rng.uniform(20.0, 35.0),
        fault_rate=0.002,
    )
    return room, rng


def device_name(device: int) -> str:
    """The device's name: its import table's name, and its actor ID's last part."""
    return f"dev-{device:06d}"


class WallClock:
    """Wall seconds since the fleet run started ($FLEET_EPOCH): the same in every worker process,
    so a device that moves to another worker finds its room's time where it left it."""

    def __init__(self, epoch: float) -> None:
        self.epoch = epoch

    def now(self) -> float:
        return time.time() - self.epoch


def worker_tables(devices: int, seed: int, epoch: float) -> dict[str, Mapping[int, Callable[..., Any]]]:
    """One import table per device.  A sync import is not told which actor calls it, so the relay
    (``setOutput``) can only find its room through a table of its own."""
    clock = WallClock(epoch)
    tables: dict[str, Mapping[int, Callable[..., Any]]] = {}
    for device in range(devices):
        room, _ = make_room(clock, seed, device)
        tables[device_name(device)] = {READ_TEMPERATURE: room.read_temperature, SET_OUTPUT: room.set_output,
                                       SLEEP: mvactors.imports.sleep}
    return tables


# Rooms live in the worker process that holds the device: one that moves to another worker
# (workers share out the actors as they come up) starts from a fresh room model there.
IMPORTS = worker_tables(int(os.environ.get("FLEET_DEVICES", "0")), int(os.environ.get("FLEET_SEED", "1")),
                        float(os.environ.get("FLEET_EPOCH", "0")))

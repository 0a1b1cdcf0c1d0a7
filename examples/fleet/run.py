"""Simulate a fleet of thermostats: one Microvium actor per device on virtual time.

Each device runs thermostat.js; its sensor and relay are backed by a small
simulated room.  Everything that varies between devices comes from ``--seed``
and every event happens on the runtime's virtual clock, so two runs with the
same arguments print the same summary apart from wall time and memory.

    python examples/fleet/run.py --devices 10000 --hours 1
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

import mvactors

HERE = Path(__file__).resolve().parent

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

    clock: mvactors.Clock
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


def make_room(clock: mvactors.Clock, seed: int, device: int) -> tuple[Room, SplitMix64]:
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


def rss_kib() -> tuple[int, int]:
    """(VmRSS, VmHWM) of this process in KiB."""
    values = {}
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                values[key] = int(value.split()[0])
    return values.get("VmRSS", 0), values.get("VmHWM", 0)


class Progress:
    """A plain-text progress bar on stderr (rewritten in place with \\r)."""

    def __init__(self, total_s: float, enabled: bool) -> None:
        self.total_s = total_s
        self.enabled = enabled
        self.started = time.perf_counter()

    def show(self, simulated_s: float, rt: mvactors.Runtime) -> None:
        if not self.enabled:
            return
        frac = min(1.0, simulated_s / self.total_s) if self.total_s else 1.0
        filled = int(frac * 30)
        bar = "#" * filled + "." * (30 - filled)
        wall = time.perf_counter() - self.started
        sys.stderr.write(f"\r[{bar}] {frac * 100:3.0f}% simulated {simulated_s / 3600:5.2f} h"
                         f"  wall {wall:6.1f} s  resident {rt.resident_count:6d}  ")
        sys.stderr.flush()

    def done(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


async def simulate(args: argparse.Namespace) -> dict[str, Any]:
    snapshot = mvactors.compile(HERE / "thermostat.js")
    period_ms = args.period * 1000
    samples = max(1, round(args.hours * 3600 / args.period))
    total_s = samples * args.period + args.period  # plus the start-up jitter
    rooms: list[Room] = []
    wall_start = time.perf_counter()
    cpu_start = time.process_time()
    rss_before, _ = rss_kib()
    async with mvactors.Runtime(clock="virtual", max_resident=args.max_resident,
                             hibernate_after=args.hibernate_after) as rt:
        progress = Progress(total_s, not args.quiet)
        actors = []
        for device in range(args.devices):
            room, rng = make_room(rt.clock, args.seed, device)
            rooms.append(room)
            actor = await rt.spawn(snapshot, {READ_TEMPERATURE: room.read_temperature, SET_OUTPUT: room.set_output,
                                              SLEEP: mvactors.imports.sleep}, actor_id=f"dev-{device:06d}")
            setpoint = round(rng.uniform(19.0, 23.0), 1)
            await actor.send(CONFIGURE, setpoint, 0.5)
            # Devices boot at random moments within one period, which spreads
            # their sampling over time instead of one burst per period.
            phase_ms = rng.randrange(args.period) * 1000
            await actor.send(RUN, period_ms, samples, phase_ms)
            actors.append(actor)
        spawn_wall = time.perf_counter() - wall_start
        # Tens of thousands of long-lived actors make every full cyclic-GC pass scan
        # them all; they live until the end, so take them out of the collector's view.
        gc.freeze()

        async def setpoint_changes() -> None:
            # Halfway through, a fifth of the occupants turn their thermostat.
            await rt.sleep(total_s / 2)
            for device, actor in enumerate(actors):
                rng = SplitMix64(args.seed * 7_919 + device + (1 << 40))
                if rng.random() < 0.2:
                    await actor.send(CONFIGURE, round(rng.uniform(17.0, 25.0), 1))

        async def show_progress() -> None:
            step = total_s / 100
            while True:
                progress.show(rt.clock.now(), rt)
                await rt.sleep(step)

        async with anyio.create_task_group() as tg:
            tg.start_soon(setpoint_changes)
            tg.start_soon(show_progress)
            await rt.sleep(total_s / 2 + 1e-3)  # let the setpoint changes be queued first
            await rt.wait_idle()
            tg.cancel_scope.cancel()
        progress.show(rt.clock.now(), rt)
        progress.done()
        simulated_s = rt.clock.now()
        stats_before_status = rt.stats()
        run_wall = time.perf_counter() - wall_start
        run_cpu = time.process_time() - cpu_start
        rss_after, rss_peak = rss_kib()
        statuses = [await actor.call(STATUS) for actor in actors]
    digest = hashlib.sha256(repr([sorted(s.items()) for s in statuses]).encode()).hexdigest()[:16]
    state_ms = {name: sum(s[f"{name.lower()}Ms"] for s in statuses) for name in STATE_NAMES}
    total_ms = sum(state_ms.values()) or 1
    final_states = {name: sum(1 for s in statuses if s["state"] == name) for name in STATE_NAMES}
    stats = stats_before_status
    return {
        "devices": args.devices,
        "simulated_hours": simulated_s / 3600,
        "samples_per_device": samples,
        "sampling_period_s": args.period,
        "wall_s": run_wall,
        "cpu_s": run_cpu,
        "spawn_wall_s": spawn_wall,
        "turns": stats["turns"],
        "turns_per_s": stats["turns"] / run_wall,
        "turns_per_cpu_s": stats["turns"] / run_cpu,
        "turn_p50_us": stats["turn_latency_p50_us"],
        "turn_p99_us": stats["turn_latency_p99_us"],
        "state_share": {name: state_ms[name] / total_ms for name in STATE_NAMES},
        "state_device_hours": {name: state_ms[name] / 3_600_000 for name in STATE_NAMES},
        "final_states": final_states,
        "transitions": sum(s["transitions"] for s in statuses),
        "samples": sum(s["samples"] for s in statuses),
        "sensor_errors": sum(s["sensorErrors"] for s in statuses),
        "mean_abs_error_c": sum(abs(s["temperature"] - s["setpoint"]) for s in statuses) / len(statuses),
        "hibernations": stats["hibernations"],
        "rehydrations": stats["rehydrations"],
        "resident": stats["resident"],
        "max_resident": args.max_resident,
        "hibernate_after": args.hibernate_after,
        "failed": stats["failed"],
        "rss_mib": rss_after / 1024,
        "rss_peak_mib": rss_peak / 1024,
        "rss_growth_mib": (rss_after - rss_before) / 1024,
        "digest": digest,
    }


def print_summary(result: dict[str, Any], command: str) -> None:
    share = result["state_share"]
    hours = result["state_device_hours"]
    lines = [
        f"command            {command}",
        f"devices            {result['devices']}",
        f"simulated time     {result['simulated_hours']:.3f} h ({result['samples_per_device']} samples "
        f"every {result['sampling_period_s']} s per device)",
        f"wall time          {result['wall_s']:.1f} s (spawning {result['spawn_wall_s']:.1f} s; "
        f"{result['cpu_s']:.1f} s CPU)",
        f"turns              {result['turns']}  ({result['turns_per_s']:.0f} turns/s wall, "
        f"{result['turns_per_cpu_s']:.0f} per CPU-s, "
        f"p50 {result['turn_p50_us']:.0f} us, p99 {result['turn_p99_us']:.0f} us)",
        "time in state      " + ", ".join(
            f"{name} {share[name] * 100:.1f}% ({hours[name]:.1f} device-h)" for name in STATE_NAMES),
        "final states       " + ", ".join(f"{name} {n}" for name, n in result["final_states"].items()),
        f"transitions        {result['transitions']}",
        f"samples            {result['samples']} ({result['sensor_errors']} sensor errors)",
        f"mean |T - set|     {result['mean_abs_error_c']:.3f} C at the end",
        f"hibernations       {result['hibernations']}  rehydrations {result['rehydrations']}",
        f"resident           {result['resident']} at the end (max_resident {result['max_resident']}, "
        f"hibernate_after {result['hibernate_after']} s)",
        f"failed actors      {result['failed']}",
        f"RSS                {result['rss_mib']:.0f} MiB (peak {result['rss_peak_mib']:.0f} MiB, "
        f"+{result['rss_growth_mib']:.0f} MiB during the run)",
        f"state digest       {result['digest']}",
    ]
    print("\n".join(lines))


def optional_int(text: str) -> int | None:
    return None if text.lower() == "none" else int(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--hours", type=float, default=1.0, help="simulated hours (default 1)")
    parser.add_argument("--period", type=int, default=60, help="sampling period in simulated seconds (default 60)")
    parser.add_argument("--seed", type=int, default=1)
    # Every device wakes every period, so hibernating between samples costs a
    # snapshot and a restore per sample: by default all stay resident (see README).
    parser.add_argument("--max-resident", type=optional_int, default=None,
                        help="live VMs at most; idle devices beyond it hibernate (default: no cap)")
    parser.add_argument("--hibernate-after", type=float, default=None,
                        help="also hibernate devices idle this many simulated seconds")
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    command = "python examples/fleet/run.py " + " ".join(sys.argv[1:] if argv is None else argv)
    result = anyio.run(simulate, args, backend=args.backend)
    print_summary(result, command.strip())


if __name__ == "__main__":
    main()

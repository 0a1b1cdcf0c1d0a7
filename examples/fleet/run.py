"""Simulate a fleet of thermostats: one Microvium actor per device on virtual time.

Each device runs thermostat.js; its sensor and relay are backed by a small
simulated room.  Everything that varies between devices comes from ``--seed``
and every event happens on the runtime's virtual clock, so two runs with the
same arguments print the same summary apart from wall time and memory.

    python examples/fleet/run.py --devices 10000 --hours 1
    python examples/fleet/run.py --devices 500 --report out/   # summary.json, devices.csv, fleet.png
    python examples/fleet/run.py --workers 2                   # 20 devices on 2 worker processes over Redis

With ``--workers N`` (workers.py) the devices are durable actors in Redis run by N
``mvactors worker`` processes on the wall clock: seconds of real time instead of hours.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
from devices import (
    CONFIGURE,
    READ_TEMPERATURE,
    RUN,
    SET_OUTPUT,
    SLEEP,
    STATE_NAMES,
    STATUS,
    Room,
    SplitMix64,
    make_room,
)
from report import Timeline, progress_bar, status_columns, status_rows, status_totals, write_report
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

import mvactors

HERE = Path(__file__).resolve().parent

def rss_kib() -> tuple[int, int]:
    """(VmRSS, VmHWM) of this process in KiB."""
    values = {}
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                values[key] = int(value.split()[0])
    return values.get("VmRSS", 0), values.get("VmHWM", 0)


# Resident memory of one device with a live VM (the VM, its actor, room and bookkeeping), measured
# at 10,000 devices uncapped: a cap is picked when the fleet would not fit in half the memory left.
RESIDENT_DEVICE_KIB = 40


def available_kib() -> int | None:
    """MemAvailable of the machine in KiB (None off Linux)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def safe_max_resident(devices: int) -> int | None:
    """No cap when every device fits resident in half the available memory, else the count that does."""
    available = available_kib()
    if available is None:
        return None
    fits = available // 2 // RESIDENT_DEVICE_KIB
    return None if devices <= fits else max(1, fits)


def sample(timeline: Timeline, rt: mvactors.Runtime, rooms: list[Room]) -> None:
    """The runtime's counters now (once a simulated minute, for the report's charts)."""
    stats = rt.stats()
    timeline.at.append(rt.clock.now() / 60)
    timeline.turns.append(stats["turns"])
    timeline.p50_us.append(stats["turn_latency_p50_us"])
    timeline.p99_us.append(stats["turn_latency_p99_us"])
    # A device's relay mirrors its state (off IDLE, heat HEATING, cool COOLING): counting the
    # relays reads every device's state without a turn, so the run's turn counts stay as they are.
    modes = [0, 0, 0]
    for room in rooms:
        modes[room.mode] += 1
    timeline.add_states(dict(zip(STATE_NAMES, modes, strict=True)))


async def spawn_devices(rt: mvactors.Runtime, snapshot: bytes, devices: int, seed: int, period_s: int, samples: int,
                        rooms: list[Room], setpoints: list[float]) -> list[mvactors.Actor]:
    """One running thermostat per device (``dev-000000``...), its room appended to ``rooms``."""
    actors = []
    for device in range(devices):
        room, rng = make_room(rt.clock, seed, device)
        rooms.append(room)
        actor = await rt.spawn(snapshot, {READ_TEMPERATURE: room.read_temperature, SET_OUTPUT: room.set_output,
                                          SLEEP: mvactors.imports.sleep}, actor_id=f"dev-{device:06d}")
        setpoint = round(rng.uniform(19.0, 23.0), 1)
        setpoints.append(setpoint)
        await actor.send(CONFIGURE, setpoint, 0.5)
        # Devices boot at random moments within one period, which spreads
        # their sampling over time instead of one burst per period.
        phase_ms = rng.randrange(period_s) * 1000
        await actor.send(RUN, period_s * 1000, samples, phase_ms)
        actors.append(actor)
    return actors


@contextlib.asynccontextmanager
async def serve_dashboard(rt: mvactors.Runtime, port: int | None) -> AsyncIterator[None]:
    """With ``--dashboard PORT``: the web dashboard of ``rt`` on 127.0.0.1, in this event loop, while the body runs.

    At the end, on a terminal, it stays up until Enter, to look at the fleet's final state.
    """
    if port is None:
        yield
        return
    from mvactors.dashboard import Server, create_app

    server = Server(create_app(runtime=rt), port=port)
    async with anyio.create_task_group() as tg:
        url = await tg.start(server.serve)
        print(f"dashboard: {url}", file=sys.stderr, flush=True)
        try:
            yield
            if sys.stdin.isatty():
                print(f"simulation finished; the dashboard stays up at {url}: press Enter to stop",
                      file=sys.stderr, flush=True)
                await anyio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)  # Ctrl-C works too
        finally:
            server.stop()


async def simulate(args: argparse.Namespace) -> dict[str, Any]:
    snapshot = mvactors.compile(HERE / "thermostat.js")
    samples = max(1, round(args.hours * 3600 / args.period))
    total_s = samples * args.period + args.period  # plus the start-up jitter
    rooms: list[Room] = []
    setpoints: list[float] = []
    timeline = Timeline("simulated minute")
    wall_start = time.perf_counter()
    cpu_start = time.process_time()
    rss_before, _ = rss_kib()
    async with mvactors.Runtime(clock="virtual", max_resident=args.max_resident, eviction=args.eviction,
                             hibernate_after=args.hibernate_after) as rt, serve_dashboard(rt, args.dashboard):
        try:
            actors = await spawn_devices(rt, snapshot, args.devices, args.seed, args.period, samples, rooms,
                                         setpoints)
        except mvactors.EngineExhausted as exc:
            live = rt.resident_count
            return {"error": f"run.py: this process holds no more than {live:,} live VMs ({exc}).\n"
                             f"Run again with --max-resident {max(1, live * 9 // 10)}: devices beyond it "
                             "hibernate between samples (see examples/fleet/README.md, Tuning)."}
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

        async def sample_every_minute() -> None:
            while True:
                sample(timeline, rt, rooms)
                await rt.sleep(60)

        async def show_progress(progress: Progress) -> None:
            task = progress.add_task("fleet", total=total_s / 3600, detail=rt.resident_count)
            while True:
                progress.update(task, completed=min(rt.clock.now(), total_s) / 3600, detail=rt.resident_count)
                await rt.sleep(total_s / 100)

        with progress_bar(args.quiet, "h", "resident") as progress:
            async with anyio.create_task_group() as tg:
                tg.start_soon(setpoint_changes)
                tg.start_soon(sample_every_minute)
                tg.start_soon(show_progress, progress)
                await rt.sleep(total_s / 2 + 1e-3)  # let the setpoint changes be queued first
                await rt.wait_idle()
                tg.cancel_scope.cancel()
            progress.update(progress.task_ids[0], completed=total_s / 3600, detail=rt.resident_count)
        sample(timeline, rt, rooms)
        simulated_s = rt.clock.now()
        stats_before_status = rt.stats()
        run_wall = time.perf_counter() - wall_start
        run_cpu = time.process_time() - cpu_start
        rss_after, rss_peak = rss_kib()
        statuses = [await actor.call(STATUS) for actor in actors]
    digest = hashlib.sha256(repr([sorted(s.items()) for s in statuses]).encode()).hexdigest()[:16]
    stats = stats_before_status
    devices = [
        {
            "device": f"dev-{device:06d}",
            "initial_setpoint": setpoints[device],
            **status_columns(status),
            "relay_switches": room.relay_switches,
        }
        for device, (status, room) in enumerate(zip(statuses, rooms, strict=True))
    ]
    return {
        "devices": args.devices,
        "seed": args.seed,
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
        **status_totals(statuses),
        "hibernations": stats["hibernations"],
        "rehydrations": stats["rehydrations"],
        "resident": stats["resident"],
        "max_resident": args.max_resident,
        "eviction": args.eviction,
        "hibernate_after": args.hibernate_after,
        "failed": stats["failed"],
        "rss_mib": rss_after / 1024,
        "rss_peak_mib": rss_peak / 1024,
        "rss_growth_mib": (rss_after - rss_before) / 1024,
        "digest": digest,
        "_devices": devices,
        "_timeline": timeline,
    }


def summary_rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    share = result["state_share"]
    hours = result["state_device_hours"]
    return [
        ("devices", f"{result['devices']}"),
        ("simulated time", f"{result['simulated_hours']:.3f} h ({result['samples_per_device']} samples "
                           f"every {result['sampling_period_s']} s per device)"),
        ("wall time", f"{result['wall_s']:.1f} s (spawning {result['spawn_wall_s']:.1f} s; "
                      f"{result['cpu_s']:.1f} s CPU)"),
        ("turns", f"{result['turns']}  ({result['turns_per_s']:.0f} turns/s wall, "
                  f"{result['turns_per_cpu_s']:.0f} per CPU-s, "
                  f"p50 {result['turn_p50_us']:.0f} us, p99 {result['turn_p99_us']:.0f} us)"),
        ("time in state", ", ".join(
            f"{name} {share[name] * 100:.1f}% ({hours[name]:.1f} device-h)" for name in STATE_NAMES)),
        *status_rows(result),
        ("hibernations", f"{result['hibernations']}  rehydrations {result['rehydrations']}"),
        ("resident", f"{result['resident']} at the end (max_resident {result['max_resident']}, "
                     f"eviction {result['eviction']}, hibernate_after {result['hibernate_after']} s)"),
        ("failed actors", f"{result['failed']}"),
        ("RSS", f"{result['rss_mib']:.0f} MiB (peak {result['rss_peak_mib']:.0f} MiB, "
                f"+{result['rss_growth_mib']:.0f} MiB during the run)"),
        ("state digest", result["digest"]),
    ]


def print_summary(rows: list[tuple[str, str]], command: str) -> None:
    table = Table(title=command, title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for name, value in rows:
        table.add_row(name, value)
    # Wide enough that no row wraps when stdout is a pipe (rich would otherwise assume 80 columns).
    Console(width=max(120, len(command) + 4)).print(table)


def optional_int(text: str) -> int | None:
    return None if text.lower() == "none" else int(text)


def optional_resident(text: str) -> int | str | None:
    return "auto" if text.lower() == "auto" else optional_int(text)


def resolve_run_length(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Fill in the defaults of the mode: hours of virtual time, or (``--workers``) seconds of wall time."""
    if args.workers is not None:
        if args.workers < 1:
            parser.error("--workers needs at least 1 worker process")
        if args.max_resident == "auto":
            args.max_resident = None
        for flag, value in (("--max-resident", args.max_resident), ("--hibernate-after", args.hibernate_after),
                            ("--eviction", args.eviction)):
            if value is not None:
                parser.error(f"{flag} applies to the in-process fleet only, not with --workers")
        defaults = {"devices": 20, "seconds": 6.0, "period": 0.5}
    else:
        if args.redis is not None:
            parser.error("--redis needs --workers N")
        if args.eviction is None:
            args.eviction = "lru"
        defaults = {"devices": 10_000, "seconds": 3600.0, "period": 60}
    if args.devices is None:
        args.devices = defaults["devices"]
    if args.max_resident == "auto":
        args.max_resident = safe_max_resident(args.devices)
        if args.max_resident is not None:
            print(f"run.py: {args.devices:,} resident devices would not fit in half the available memory; "
                  f"capping live VMs at --max-resident {args.max_resident:,} (pass --max-resident none to "
                  "run uncapped)", file=sys.stderr)
    if args.period is None:
        args.period = defaults["period"]
    if args.period <= 0:
        parser.error("--period must be positive")
    if args.workers is None:
        if args.period != int(args.period):
            parser.error("--period is whole simulated seconds without --workers")
        args.period = int(args.period)
    if args.hours is not None and args.seconds is not None:
        parser.error("give --hours or --seconds, not both")
    if args.hours is None:
        args.hours = (args.seconds if args.seconds is not None else defaults["seconds"]) / 3600


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=None, help="default 10,000 (20 with --workers)")
    parser.add_argument("--hours", type=float, default=None, help="simulated hours (default 1)")
    parser.add_argument("--seconds", type=float, default=None,
                        help="run length in seconds instead of --hours (default 6 with --workers)")
    parser.add_argument("--period", type=float, default=None,
                        help="sampling period in simulated seconds (default 60; 0.5 with --workers)")
    parser.add_argument("--seed", type=int, default=1)
    # Every device wakes every period, so hibernating between samples costs a
    # snapshot and a restore per sample: by default all stay resident (see README).
    parser.add_argument("--max-resident", type=optional_resident, default="auto",
                        help="live VMs at most; idle devices beyond it hibernate ('none': no cap; default "
                             "'auto': no cap unless the fleet would not fit in half the available memory)")
    # A cap below the fleet hibernates, with LRU, the device due next (every sample a miss);
    # "segmented" keeps 90% of the cap resident through the cycle (docs/perf-notes.md).
    parser.add_argument("--eviction", choices=("lru", "segmented"), default=None,
                        help="which devices the cap hibernates: the least recently active ('lru', the "
                             "default) or those outside an established 90%% of the cap ('segmented')")
    parser.add_argument("--hibernate-after", type=float, default=None,
                        help="also hibernate devices idle this many simulated seconds")
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--report", type=Path, metavar="DIR",
                        help="write summary.json, devices.csv and fleet.png (charts) into DIR")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="run the devices as durable actors on N `mvactors worker` processes over Redis "
                             "(wall clock: seconds, not hours)")
    parser.add_argument("--redis", metavar="URL", help="with --workers: this Redis instead of a private redis-server")
    parser.add_argument("--dashboard", type=int, metavar="PORT",
                        help="serve the web dashboard of the fleet's actors on 127.0.0.1:PORT while it runs "
                             '(needs pip install "mvactors[dashboard]")')
    args = parser.parse_args(argv)
    if args.dashboard is not None:
        if args.workers is not None:
            parser.error("--dashboard shows the in-process fleet; with --workers, run "
                         "`mvactors dashboard --redis URL` against the fleet's Redis (give it with --redis)")
        if args.backend != "asyncio":
            parser.error("--dashboard is served by uvicorn, which runs on asyncio: drop --backend trio")
    resolve_run_length(parser, args)
    command = "python examples/fleet/run.py " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.workers is not None:
        from workers import device_rows, simulate_on_workers
        from workers import summary_rows as worker_summary_rows

        result = anyio.run(simulate_on_workers, args, backend=args.backend)
        print_summary(worker_summary_rows(result), command.strip())
        devices = Table("device", "owner", "setpoint", "state", "temperature", "samples", "transitions", "turns",
                        title="devices (owner: the worker that ran it)", title_justify="left")
        for row in device_rows(result):
            devices.add_row(*row)
        Console(width=120).print(devices)
        for line in result["wrong"]:
            print(f"WRONG {line}", file=sys.stderr)
        status = 1 if result["wrong"] or any(result["exit_codes"].values()) else 0
    else:
        result = anyio.run(simulate, args, backend=args.backend)
        if "error" in result:
            print(result["error"], file=sys.stderr)
            return 2
        print_summary(summary_rows(result), command.strip())
        status = 0
    if args.report is not None:
        for path in write_report(result, args.report):
            print(f"wrote {path}")
    return status


if __name__ == "__main__":
    sys.exit(main())

"""``run.py --workers N``: the fleet's devices as durable actors in Redis, run by N worker processes.

Each device is spawned through ``mvactors.connect(url)`` and run by one of N
``mvactors worker`` processes (``--imports devices:IMPORTS``).  Workers run on the wall
clock, so in this mode simulated time is wall time: the run is seconds long, not hours.
At the end every device's state is checked against what it was sent (exact counts), and
the workers are stopped with SIGTERM (they hand their actors back and exit 0).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from devices import CONFIGURE, RUN, STATE_NAMES, STATUS, SplitMix64, WallClock, device_name, make_room
from report import Timeline, progress_bar, status_columns, status_rows, status_totals

import mvactors
from mvactors.testing import redis_server

HERE = Path(__file__).resolve().parent
WORKER = "import sys; from mvactors.cli import main; sys.exit(main(sys.argv[1:]))"
START_TIMEOUT_S = 60.0


@dataclass
class Device:
    """What the client sent one device, so its final state can be checked exactly."""

    actor_id: str
    setpoint: float
    phase_ms: int
    messages: int = 2  # configure and run
    status_calls: int = 0


@contextlib.asynccontextmanager
async def redis_url(given: str | None) -> AsyncIterator[str]:
    if given is not None:
        yield given
        return
    async with redis_server() as url:
        yield url


def start_worker(url: str, name: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", WORKER, "worker", "--redis", url, "--imports", "devices:IMPORTS",
                             "--worker-id", name], env=env, stderr=subprocess.DEVNULL)


def stop_workers(workers: dict[str, subprocess.Popen[bytes]]) -> dict[str, int]:
    """SIGTERM every worker (graceful handoff), then their exit codes (SIGKILL after 30 s)."""
    for proc in workers.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    codes = {}
    for name, proc in workers.items():
        try:
            codes[name] = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            codes[name] = proc.wait()
    return codes


async def wait_for_workers(client: mvactors.Client, workers: dict[str, subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while len(await client.workers()) < len(workers):
        dead = {name: proc.returncode for name, proc in workers.items() if proc.poll() is not None}
        if dead:
            raise RuntimeError(f"worker processes exited at start: {dead}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(workers)} workers did not register in Redis within {START_TIMEOUT_S:.0f} s")
        await anyio.sleep(0.05)  # a worker announces itself only in Redis: poll it


async def simulate_on_workers(args: argparse.Namespace) -> dict[str, Any]:
    snapshot = mvactors.compile(HERE / "thermostat.js")
    period_ms = round(args.period * 1000)
    samples = max(1, round(args.hours * 3600 / args.period))
    run_id = uuid.uuid4().hex[:8]  # actor IDs unique per run, so a shared --redis can be reused
    epoch = time.time()
    env = dict(os.environ, FLEET_DEVICES=str(args.devices), FLEET_SEED=str(args.seed), FLEET_EPOCH=repr(epoch),
               PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    wall_start = time.perf_counter()
    cpu_start = time.process_time()
    devices: list[Device] = []
    owners_seen: list[list[str]] = [[] for _ in range(args.devices)]
    timeline = Timeline("second")
    async with redis_url(args.redis) as url, mvactors.connect(url) as client:
        workers = {f"worker-{i + 1}": start_worker(url, f"worker-{i + 1}", env) for i in range(args.workers)}
        try:
            await wait_for_workers(client, workers)
            clock = WallClock(epoch)
            for device in range(args.devices):
                _, rng = make_room(clock, args.seed, device)  # the same draws as the virtual run
                actor_id = await client.spawn(snapshot, imports=device_name(device),
                                              actor_id=f"fleet-{run_id}/{device_name(device)}")
                setpoint = round(rng.uniform(19.0, 23.0), 1)
                phase_ms = rng.randrange(period_ms)
                await client.send(actor_id, CONFIGURE, setpoint, 0.5, message_id=f"{actor_id}/configure")
                await client.send(actor_id, RUN, period_ms, samples, phase_ms, message_id=f"{actor_id}/run")
                devices.append(Device(actor_id, setpoint, phase_ms))
            spawn_wall = time.perf_counter() - wall_start
            total_s = samples * args.period + args.period
            started = time.monotonic()
            changes_at = started + total_s / 2
            ends_at = started + total_s
            changes_sent = False
            with progress_bar(args.quiet, "s", "turns committed") as progress:
                task = progress.add_task("fleet", total=total_s, detail=0)
                while time.monotonic() < ends_at:
                    if not changes_sent and time.monotonic() >= changes_at:
                        # Halfway through, a fifth of the occupants turn their thermostat.
                        for device, dev in enumerate(devices):
                            rng = SplitMix64(args.seed * 7_919 + device + (1 << 40))
                            if rng.random() < 0.2:
                                dev.setpoint = round(rng.uniform(17.0, 25.0), 1)
                                dev.messages += 1
                                await client.send(dev.actor_id, CONFIGURE, dev.setpoint,
                                                  message_id=f"{dev.actor_id}/change")
                        changes_sent = True
                    await observe(client, devices, owners_seen, timeline, started)
                    progress.update(task, completed=min(timeline.at[-1], total_s), detail=timeline.turns[-1])
                    await anyio.sleep(min(0.5, max(0.0, ends_at - time.monotonic())))
                statuses = await wait_until_done(client, devices, period_ms, samples,
                                                 deadline=time.monotonic() + 60)
                await observe(client, devices, owners_seen, timeline, started)
                progress.update(task, completed=total_s, detail=timeline.turns[-1])
            described = [await client.describe(dev.actor_id) for dev in devices]
        finally:
            exit_codes = stop_workers(workers)
    run_wall = time.perf_counter() - wall_start
    run_cpu = time.process_time() - cpu_start
    result = summarize(args, url, devices, statuses, described, owners_seen, exit_codes, samples,
                       run_wall=run_wall, run_cpu=run_cpu, spawn_wall=spawn_wall)
    result["_timeline"] = timeline
    return result


async def observe(client: mvactors.Client, devices: list[Device], owners_seen: list[list[str]], timeline: Timeline,
                  started: float) -> None:
    """Note each device's owner if it changed, and sample the turns committed in all into ``timeline``."""
    turns = 0
    for dev, seen in zip(devices, owners_seen, strict=True):
        info = await client.describe(dev.actor_id)
        turns += info["turns"]
        owner = info["owner"]
        if owner and (not seen or seen[-1] != owner):
            seen.append(owner)
    timeline.at.append(time.monotonic() - started)
    timeline.turns.append(turns)


def expected_ms(dev: Device, period_ms: int, samples: int) -> int:
    return dev.phase_ms + samples * period_ms


async def wait_until_done(client: mvactors.Client, devices: list[Device], period_ms: int, samples: int,
                          deadline: float) -> list[dict[str, Any]]:
    """Every device's status once its main loop has returned (all its time accounted for)."""
    statuses: list[dict[str, Any]] = []
    for dev in devices:
        while True:
            dev.status_calls += 1
            status = await client.call(dev.actor_id, STATUS, timeout=max(1.0, deadline - time.monotonic()))
            if sum(status[f"{n.lower()}Ms"] for n in STATE_NAMES) >= expected_ms(dev, period_ms, samples):
                statuses.append(status)
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{dev.actor_id} did not finish its {samples} samples")
            await anyio.sleep(0.1)  # its last sleep is still running on a worker
    return statuses


def expected_turns(dev: Device, samples: int) -> int:
    """Messages (sent and status calls), the phase sleep, and a sensor read plus a sleep per sample."""
    return dev.messages + dev.status_calls + (1 if dev.phase_ms > 0 else 0) + 2 * samples


def summarize(args: argparse.Namespace, url: str, devices: list[Device], statuses: list[dict[str, Any]],
              described: list[dict[str, Any]], owners_seen: list[list[str]], exit_codes: dict[str, int],
              samples: int, *, run_wall: float, run_cpu: float, spawn_wall: float) -> dict[str, Any]:
    period_ms = round(args.period * 1000)
    wrong = []
    for dev, status, info in zip(devices, statuses, described, strict=True):
        problems = []
        if status["samples"] != samples:
            problems.append(f"{status['samples']} samples, not {samples}")
        if sum(status[f"{n.lower()}Ms"] for n in STATE_NAMES) != expected_ms(dev, period_ms, samples):
            problems.append("time in states does not add up")
        if status["setpoint"] != dev.setpoint:
            problems.append(f"setpoint {status['setpoint']}, not the {dev.setpoint} last sent")
        if info["turns"] != expected_turns(dev, samples) or info["mailbox"] or info["failed"]:
            problems.append(f"{info['turns']} turns (expected {expected_turns(dev, samples)}), "
                            f"{info['mailbox']} unapplied, failed: {info['failed']}")
        if problems:
            wrong.append(f"{dev.actor_id}: {'; '.join(problems)}")
    owners = [seen[-1] if seen else "?" for seen in owners_seen]
    turns = sum(info["turns"] for info in described)
    per_device = [
        {
            "device": dev.actor_id,
            "owner": owner,
            "moves": max(0, len(seen) - 1),
            **status_columns(status),
            "turns": info["turns"],
        }
        for dev, status, info, owner, seen in zip(devices, statuses, described, owners, owners_seen, strict=True)
    ]
    return {
        "devices": args.devices,
        "seed": args.seed,
        "workers": args.workers,
        "redis": url,
        "wall_seconds": samples * args.period,
        "samples_per_device": samples,
        "sampling_period_s": args.period,
        "wall_s": run_wall,
        "cpu_s": run_cpu,
        "spawn_wall_s": spawn_wall,
        "turns": turns,
        "turns_per_s": turns / run_wall,
        **status_totals(statuses),
        "messages": sum(dev.messages for dev in devices),
        "failed": sum(1 for info in described if info["failed"]),
        "owners": dict(zip((dev.actor_id for dev in devices), owners, strict=True)),
        "spread": dict(sorted(Counter(owners).items())),
        "moved": sum(1 for seen in owners_seen if len(seen) > 1),
        "exit_codes": exit_codes,
        "wrong": wrong,
        "_devices": per_device,
    }


def summary_rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    share = result["state_share"]
    spread = ", ".join(f"{name} {n}" for name, n in result["spread"].items())
    codes = ", ".join(f"{name} {code}" for name, code in result["exit_codes"].items())
    return [
        ("devices", f"{result['devices']} durable actors in Redis at {result['redis']}"),
        ("workers", f"{result['workers']} `mvactors worker` process(es); devices per worker: {spread} "
                    f"({result['moved']} moved during the run)"),
        ("clock", f"WALL: workers run on the wall clock, so simulated time is wall time here: "
                  f"{result['wall_seconds']:.1f} s ({result['samples_per_device']} samples "
                  f"every {result['sampling_period_s']} s per device)"),
        ("wall time", f"{result['wall_s']:.1f} s (spawning {result['spawn_wall_s']:.1f} s; "
                      f"{result['cpu_s']:.1f} s CPU in this client)"),
        ("turns", f"{result['turns']} committed ({result['turns_per_s']:.0f} turns/s wall)"),
        ("time in state", ", ".join(f"{name} {share[name] * 100:.1f}%" for name in STATE_NAMES)),
        *status_rows(result),
        ("failed actors", f"{result['failed']}"),
        ("exact counts", "every device applied every message: "
                         + ("yes" if not result["wrong"] else f"NO ({len(result['wrong'])} devices wrong)")
                         + f" ({result['messages']} messages, {result['samples']} samples, "
                           f"{result['turns']} turns)"),
        ("worker exits", f"SIGTERM (graceful handoff): {codes}"),
    ]


def device_rows(result: dict[str, Any]) -> list[tuple[str, ...]]:
    return [(d["device"], d["owner"], f"{d['setpoint']}", d["state"], f"{d['temperature']}", f"{d['samples']}",
             f"{d['transitions']}", f"{d['turns']}") for d in result["_devices"]]

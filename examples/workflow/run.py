"""Durable order workflows on Redis: two worker processes, one killed mid-run; every order completes once.

    python examples/workflow/run.py [--orders 12]

Starts a private redis-server (mvactors.testing.redis_server), two `mvactors worker`
processes, and one actor per order.  Once some orders are charged it kill -9s the worker
holding the most of them; the other takes its actors over after the lease lapses, replays nothing it
journaled, and finishes every order.  Then it checks the ledger: one charge and one
shipment per order.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import anyio

import mvactors
from mvactors.testing import redis_server

HERE = Path(__file__).resolve().parent
WORKER = "import sys; from mvactors.cli import main; sys.exit(main(sys.argv[1:]))"


def start_worker(url: str, name: str, ledger: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, WORKFLOW_LEDGER=str(ledger),
               PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen([sys.executable, "-c", WORKER, "worker", "--redis", url, "--imports", "hosts:IMPORTS",
                             "--worker-id", name, "--lease-ms", "1000"], env=env, stderr=subprocess.DEVNULL)


def ledger_lines(ledger: Path) -> list[str]:
    return ledger.read_text().split("\n")[:-1] if ledger.exists() else []


async def main(orders: int) -> int:
    snapshot = mvactors.compile(HERE / "order.js")
    with tempfile.TemporaryDirectory() as tmp:
        ledger = Path(tmp) / "ledger.txt"
        async with redis_server() as url, mvactors.connect(url) as client:
            workers = {name: start_worker(url, name, ledger) for name in ("worker-1", "worker-2")}
            try:
                while len(await client.workers()) < len(workers):  # both are up
                    await anyio.sleep(0.05)
                ids = [await client.spawn(snapshot, imports="orders", actor_id=f"order-{i}") for i in range(orders)]
                for i, actor_id in enumerate(ids):
                    await client.send(actor_id, 1, actor_id, 1000 + i, message_id=f"place-{actor_id}")
                print(f"placed {orders} orders; 2 workers running")
                deadline = time.monotonic() + 60
                while sum(line.startswith("charged") for line in ledger_lines(ledger)) < orders // 3:
                    if time.monotonic() > deadline:
                        raise TimeoutError("no order was charged")
                    await anyio.sleep(0.05)
                owners = {a: (await client.describe(a))["owner"] for a in ids}
                victim, held = Counter(o for o in owners.values() if o).most_common(1)[0]
                workers[victim].send_signal(signal.SIGKILL)
                print(f"kill -9 {victim} while it held {held} unfinished orders")
                statuses: dict[str, object] = {}
                while len(statuses) < orders:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"orders not shipped: {sorted(set(ids) - set(statuses))}")
                    for actor_id in ids:
                        if actor_id not in statuses:
                            state = await client.call(actor_id, 2, timeout=30)
                            if state and state["status"] == "shipped":
                                statuses[actor_id] = state
                    await anyio.sleep(0.05)
            finally:
                for proc in workers.values():
                    proc.send_signal(signal.SIGTERM)
                for proc in workers.values():
                    proc.wait(30)
        effects = Counter(tuple(line.split()[:2]) for line in ledger_lines(ledger))
        retried = sum(1 for s in statuses.values() if isinstance(s, dict) and s["attempts"] > 1)
        bad = [(kind, order, n) for (kind, order), n in effects.items() if n != 1]
        missing = [a for a in ids if effects[("charged", a)] != 1 or effects[("shipped", a)] != 1]
        moved = sum(1 for a, o in owners.items() if o == victim)
        print(f"all {orders} orders shipped ({moved} finished by the surviving worker after the kill); "
              f"{retried} needed a second shipping attempt")
        print(f"ledger: {sum(effects.values())} effects, each order charged once and shipped once: "
              f"{'yes' if not bad and not missing else 'NO'}")
        return 1 if bad or missing else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=12)
    sys.exit(anyio.run(main, parser.parse_args().orders))

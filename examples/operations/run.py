"""Operating durable actors: find and repair, upgrade, replay, fork, and a gas pause resumed.

    python examples/operations/run.py

Starts a private redis-server (mvactors.testing.redis_server) and runs workers in this
process.  In order:
1. an actor fails because no worker has its import table; `actors(state="failed")` finds it
   and `retry` repairs it once a worker with the table runs;
2. `replay` of its recorded history catches a version 2 that diverges;
3. a v1 -> v2 upgrade with `migrate`, keeping its state;
4. a `fork` at an earlier turn;
5. a gas pause, resumed with more gas.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio

import mvactors
from mvactors.testing import redis_server

HERE = Path(__file__).resolve().parent
AUDIT: list[str] = []


def audit(line: str) -> None:
    AUDIT.append(line)


TABLES = {"accounts": {1: audit}}


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    with anyio.fail_after(20):
        while not await check():
            await anyio.sleep(0.05)
    print(f"   ({what})")


async def main() -> None:
    v1, v2, buggy = (mvactors.compile(HERE / name) for name in ("v1.js", "v2.js", "v2_buggy.js"))
    async with redis_server() as url, mvactors.connect(url) as client:
        print("1. an actor fails (its import table is missing), is found, and is retried")
        account = await client.spawn(v1, imports="accounts", actor_id="account-1", history=20)
        await client.send(account, 1, 100)
        async with mvactors.Worker(url, {}):  # a worker without the "accounts" table

            async def failed() -> bool:
                return (await client.describe(account))["state"] == "failed"

            await until(failed, "it failed")
        found = [info async for info in client.actors(state="failed")]
        print(f"   failed: {[(i['id'], i['failed']) for i in found]}")
        async with mvactors.Worker(url, TABLES):
            await client.retry(account)
            print(f"   retried; balance = {await client.call(account, 2, timeout=20)}")
            for amount in (20, 5):
                await client.call(account, 1, amount, timeout=20)

            print("2. replay: the recorded history, re-run here on the current code and on a candidate")
            print(f"   on its own code: {await client.replay(account)}")
            report = await client.replay(account, snapshot=buggy)
            print(f"   on v2_buggy: diverged at turn {report['diverged']['turn']}: {report['diverged']}")

            print("3. upgrade v1 -> v2 with migrate (OUT = export 10 on v1, IN = export 11 on v2)")
            await client.upgrade(account, v2, migrate=(10, 11), timeout=20)
            print(f"   balance kept: {await client.call(account, 2, timeout=20)}; "
                  f"deposits counted from now: {await client.call(account, 4, timeout=20)}")
            print(f"   history: {[(e['turn'], e['kind']) async for e in client.history(account)]}")

            print("4. fork at turn 1 (after the first deposit)")
            fork = await client.fork(account, turn=1, actor_id="account-1-at-turn-1")
            print(f"   {fork}: balance = {await client.call(fork, 2, timeout=20)} (the original: "
                  f"{await client.call(account, 2, timeout=20)})")

            print("5. a gas pause, resumed")
            greedy = await client.spawn(v1, imports="accounts", actor_id="greedy",
                                        gas=mvactors.GasPolicy(per_turn=20_000))
            async with anyio.create_task_group() as tg:
                result: list[int] = []

                async def heavy() -> None:
                    result.append(await client.call(greedy, 3, 50_000, timeout=20))

                tg.start_soon(heavy)

                async def paused() -> bool:
                    return (await client.describe(greedy))["state"] == "paused"

                await until(paused, "paused: " + "out of gas")
                print(f"   {(await client.describe(greedy))['paused']['detail']}")
                await client.resume(greedy, extra_gas=5_000_000)
            print(f"   resumed with more gas; the waiting caller got {result[0]}")


if __name__ == "__main__":
    logging.basicConfig(level=logging.CRITICAL)  # (step 1's failure is logged at ERROR: expected here)
    anyio.run(main)

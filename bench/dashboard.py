"""How fast the dashboard's pages render with many actors in Redis (the issue: first page within 300 ms at 100,000).

    python bench/dashboard.py            # 100,000 actors on a private redis-server
    python bench/dashboard.py --quick    # 10,000

Spawns the actors through the client (no worker: they need not run to be listed), then times
GET /actors (the first page), GET /actors?state=failed and GET / through the ASGI app in this
process, so the figures are the app's and Redis's, not a browser's.  The listing needs the
operations API's client.actors(); without it the script says so and times only the overview.
The last row times the first page again as the dashboard read it before actors() took limit=.

Recorded in the README's Dashboard section (100,000 actors, 2 shared cores, three runs): the
first /actors page 5.8, 4.6 and 5.2 ms median; unsized (before) 321.6, 170.6 and 129.2 ms.
"""

from __future__ import annotations

import argparse
import statistics
import time
from unittest import mock

import anyio
import httpx

import mvactors
from mvactors.dashboard import create_app
from mvactors.dashboard.sources import RedisSource
from mvactors.testing import RedisServer

COUNTER_JS = "let n = 0; vmExport(1, (x) => { n = n + x; return n; });"


async def spawn_many(url: str, count: int) -> float:
    snapshot = mvactors.compile(COUNTER_JS)
    started = time.perf_counter()
    async with mvactors.connect(url) as client:
        next_id = iter(range(count))

        async def spawner() -> None:
            for i in next_id:
                await client.spawn(snapshot, actor_id=f"bench-{i:07d}")

        async with anyio.create_task_group() as tg:
            for _ in range(64):  # requests in flight: the client's pool, not one round trip at a time
                tg.start_soon(spawner)
    return time.perf_counter() - started


async def timed(http: httpx.AsyncClient, path: str, runs: int) -> tuple[float, float, int]:
    """Median and worst milliseconds of ``runs`` GETs (after one warm-up), and the status."""
    status = (await http.get(path)).status_code
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        response = await http.get(path)
        times.append((time.perf_counter() - t0) * 1000)
        status = response.status_code
    return statistics.median(times), max(times), status


async def main(count: int, runs: int) -> None:
    with RedisServer() as server:
        spawn_s = await spawn_many(server.url, count)
        print(f"spawned {count:,} actors in {spawn_s:.1f} s")
        has_listing = callable(getattr(mvactors.cluster.Client, "actors", None))
        app = create_app(redis_url=server.url)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            # The last row walks every actor for an owner nobody is: it stops at the search budget.
            paths = (["/", "/actors", "/actors?state=failed", "/actors?state=paused", "/workers",
                      "/actors?owner=nobody"] if has_listing else ["/"])
            print(f"{'page':<28} {'median ms':>10} {'worst ms':>10}  status")
            for path in paths:
                median, worst, status = await timed(http, path, runs)
                print(f"{path:<28} {median:>10.1f} {worst:>10.1f}  {status}")
            if has_listing:
                # A/B in the same run: the first page as the dashboard read it before actors() took
                # limit= (an unsized stream: its first round describes up to 8,192 actors).
                real = RedisSource._accepts

                def unsized(self: RedisSource, method: str, parameter: str) -> bool:
                    return parameter != "limit" and real(self, method, parameter)

                with mock.patch.object(RedisSource, "_accepts", unsized):
                    median, worst, status = await timed(http, "/actors", runs)
                print(f"{'/actors (unsized, before)':<28} {median:>10.1f} {worst:>10.1f}  {status}")
        if not has_listing:
            print("client.actors() is missing (the operations API): /actors cannot list yet, nothing to time there")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10,000 actors instead of 100,000")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    anyio.run(main, 10_000 if args.quick else 100_000, args.runs, backend="asyncio")

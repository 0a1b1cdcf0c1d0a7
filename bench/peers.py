"""mvactors next to the engine a Python user would pick instead: QuickJS's C extension (PyPI ``quickjs``).

    python bench/peers.py            # full run (~70 s on 2 cores; the live row's quickjs child peaks at 3.6 GiB)
    python bench/peers.py --quick    # fewer batches, small counts (~10 s)

Both engines run in this one process with their batches interleaved (mvactors,
quickjs, mvactors, ...), so machine speed and load cancel out of the ratios.
Every time is the median over the batches of the time per operation.  The
ratio is quickjs ÷ mvactors for times and memory, mvactors ÷ quickjs for
counts: above 1 always means mvactors is ahead (issue 18's targets).
``MVACTORS_PURE=1`` measures mvactors' pure-Python call path instead of the C one.

Rows (issue 18's first table):

* trivial export call ``(x) => x + 1`` from Python;
* guest -> Python host round trip: per call, (a guest loop calling an empty host
  function) - (the same loop without the call), over the loop's length;
* new ready context: ``VM.restore`` of the trivial snapshot + its first call,
  against ``quickjs.Context()`` + eval of the same function + its first call.
  mvactors twice: a brand-new engine instance (the pool emptied first, as a
  process that never closed a VM sees it) and a recycled one (the default once
  VMs are closed: ``close()`` gives the instance back to the pool).  Releasing
  the contexts is not timed, for either engine;
* persist + resume of a context holding a little state: ``create_snapshot(collect=True)``
  + ``VM.restore`` + a first call + closing the old VM, against JSON.stringify of
  the state + a new Context + eval of the script + JSON.parse of the state + a
  first call + dropping the old Context;
* RSS per live context: VmRSS delta over N live contexts, each called once, in
  a fresh subprocess per engine;
* most live contexts in one process: contexts created (and called once) until a
  cap or a failure, in a fresh subprocess per engine;
* actor turns, ``await call`` round-robin over 1,000 actors: ``mvactors.Runtime``
  actors against the naive asyncio baseline (one ``asyncio.Queue`` and one task
  per context, the caller awaiting a future), in the same event loop;
* actor turns, ``send`` twice to each of 1,000 actors, then wait until idle
  (``Runtime.wait_idle`` / ``Queue.join``), per message;
* guest compute: one call that builds 1000 objects and makes 100 passes over
  them, the same JavaScript in both (mvactors with its default hard stop on).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import importlib.metadata
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from common import rss_kib

import mvactors
from mvactors.vm import _calls, _pool

try:
    import quickjs  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover - a bench extra
    quickjs = None

ROOT = Path(__file__).resolve().parent.parent
TIMES = "\N{MULTIPLICATION SIGN}"

# Each guest function is written once and handed to both engines, so they run the same JavaScript.
TRIVIAL = "(x) => x + 1"
TRIVIAL_JS = f"vmExport(1, {TRIVIAL});"
QJS_TRIVIAL = f"var inc = {TRIVIAL};"

LOOP_JS = """
const f = vmImport(1);
vmExport(1, (n) => { for (let i = 0; i < n; i++) { f(); } return n; });
vmExport(2, (n) => { for (let i = 0; i < n; i++) { } return n; });
"""
QJS_LOOP = """
var with_call = (n) => { for (let i = 0; i < n; i++) { f(); } return n; };
var without_call = (n) => { for (let i = 0; i < n; i++) { } return n; };
var inc = (x) => x + 1;
"""

# "A little state": a counter, a total, a few strings and a short log of objects.
STATE_INIT = "{ count: 0, total: 0, names: ['alpha', 'beta', 'gamma'], log: [] }"
STATE_ADD = """(x) => {
  state.count = state.count + 1;
  state.total = state.total + x;
  if (state.log.length < 16) state.log.push({ at: state.count, x: x });
  return state.total;
}"""
STATE_COUNT = "() => state.count"
STATE_JS = f"let state = {STATE_INIT};\nvmExport(1, {STATE_ADD});\nvmExport(2, {STATE_COUNT});\n"
QJS_STATE = f"""var state = {STATE_INIT};
var add = {STATE_ADD};
var count = {STATE_COUNT};
var persist = () => JSON.stringify(state);
var resume = (text) => {{ state = JSON.parse(text); }};
"""
STATE_CALLS = 20

# Values stay below 4096 so the passes allocate nothing in either engine (Microvium's int14,
# QuickJS's small ints): the row measures the interpreters, building the objects aside.
COMPUTE = """(passes) => {
  const objs = [];
  for (let i = 0; i < 1000; i++) objs.push({ v: i, w: 0 });
  let s = 0;
  for (let p = 0; p < passes; p++) {
    for (let i = 0; i < 1000; i++) {
      const o = objs[i];
      o.w = (o.w + o.v) & 4095;
      s = (s + o.w) & 4095;
    }
  }
  return s;
}"""
COMPUTE_JS = f"vmExport(1, {COMPUTE});"
QJS_COMPUTE = f"var compute = {COMPUTE};"
PASSES = 100


@dataclasses.dataclass
class Settings:
    batches: int
    calls: int  # per batch, for sub-µs operations
    loop: int  # guest loop iterations per batch (host round trip)
    contexts: int  # per batch, for the new-context and persist rows
    actors: int
    rounds: int  # per batch: calls to every actor, or pairs of sends
    compute_runs: int  # per batch
    rss: int  # live contexts whose RSS is measured
    live: int  # cap of the most-live-contexts row for mvactors (0 skips the row)
    live_quickjs: int  # ... and for quickjs


FULL = Settings(batches=21, calls=30_000, loop=30_000, contexts=200, actors=1_000, rounds=2, compute_runs=2,
                rss=10_000, live=100_000, live_quickjs=50_000)
QUICK = Settings(batches=5, calls=5_000, loop=5_000, contexts=50, actors=1_000, rounds=1, compute_runs=1,
                 rss=2_000, live=5_000, live_quickjs=5_000)


@dataclasses.dataclass
class Row:
    name: str
    mvactors: str
    quickjs: str
    ratio: str  # above 1: mvactors ahead


# A batch runs some operations and returns (how many, ns spent on them), so that setup and
# teardown around the timed part stay out of it.
Batch = Callable[[], tuple[int, int]]
AsyncBatch = Callable[[], Awaitable[tuple[int, int]]]


def timed(fn: Callable[[], int]) -> Batch:
    """A batch timing all of ``fn`` (which returns its operation count)."""
    def batch() -> tuple[int, int]:
        t0 = time.perf_counter_ns()
        n = fn()
        return n, time.perf_counter_ns() - t0
    return batch


def interleaved(a: Batch, b: Batch, batches: int) -> tuple[float, float]:
    """Medians of ns per operation of ``a`` and ``b``, batches alternated."""
    a()
    b()  # warm up
    sa: list[float] = []
    sb: list[float] = []
    for _ in range(batches):
        for fn, samples in ((a, sa), (b, sb)):
            n, ns = fn()
            samples.append(ns / n)
    return statistics.median(sa), statistics.median(sb)


async def interleaved_async(a: AsyncBatch, b: AsyncBatch, batches: int) -> tuple[float, float]:
    """:func:`interleaved` for batches that run on the event loop."""
    await a()
    await b()
    sa: list[float] = []
    sb: list[float] = []
    for _ in range(batches):
        for fn, samples in ((a, sa), (b, sb)):
            n, ns = await fn()
            samples.append(ns / n)
    return statistics.median(sa), statistics.median(sb)


def time_row(name: str, mv_ns: float, qjs_ns: float) -> Row:
    return Row(name, duration(mv_ns), duration(qjs_ns), times(qjs_ns / mv_ns))


def times(ratio: float | None) -> str:
    return "—" if ratio is None else f"{ratio:.2f}{TIMES}"


def duration(ns: float) -> str:
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e4:
        return f"{ns / 1e3:.1f} µs"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.0f} ns"


# ---------------------------------------------------------------- calls


def call_rows(s: Settings) -> list[Row]:
    vm = mvactors.VM.restore(mvactors.compile(TRIVIAL_JS))
    inc = vm.exports[1]
    loops = mvactors.VM.restore(mvactors.compile(LOOP_JS), {1: lambda: None})
    m_with, m_without = loops.exports[1], loops.exports[2]
    ctx = quickjs.Context()
    ctx.add_callable("f", lambda: None)
    ctx.eval(QJS_LOOP)
    q_inc, q_with, q_without = ctx.get("inc"), ctx.get("with_call"), ctx.get("without_call")
    assert inc(1) == q_inc(1) == 2

    def calls(fn: Callable[[int], object]) -> Batch:
        def batch() -> int:
            for _ in range(s.calls):
                fn(5)
            return s.calls
        return timed(batch)

    def loop(fn: Callable[[int], object]) -> Batch:
        def batch() -> int:
            fn(s.loop)
            return s.loop
        return timed(batch)

    try:
        m, q = interleaved(calls(inc), calls(q_inc), s.batches)
        mw, qw = interleaved(loop(m_with), loop(q_with), s.batches)
        mo, qo = interleaved(loop(m_without), loop(q_without), s.batches)
    finally:
        vm.close()
        loops.close()
    return [time_row(f"trivial export call `{TRIVIAL}`", m, q),
            time_row("guest → Python host round trip", mw - mo, qw - qo)]


# ---------------------------------------------------------------- contexts


def new_context_rows(s: Settings, trivial: bytes) -> list[Row]:
    restore = mvactors.VM.restore
    k = s.contexts

    def mv_batch(fresh: bool) -> Batch:
        def batch() -> tuple[int, int]:
            if fresh:
                # Idle instances are forgotten, not freed (they share one wasmtime Store), so every
                # restore below makes a new one and the process grows: fine for a bench.
                _pool.clear()
            vms = []
            t0 = time.perf_counter_ns()
            for _ in range(k):
                vm = restore(trivial)
                vm.exports[1](1)
                vms.append(vm)
            elapsed = time.perf_counter_ns() - t0
            for vm in vms:
                vm.close()
            if fresh:
                _pool.clear()
            return k, elapsed
        return batch

    def qjs_batch() -> tuple[int, int]:
        contexts = []
        t0 = time.perf_counter_ns()
        for _ in range(k):
            ctx = quickjs.Context()
            ctx.eval(QJS_TRIVIAL)
            ctx.get("inc")(1)
            contexts.append(ctx)
        elapsed = time.perf_counter_ns() - t0
        contexts.clear()
        return k, elapsed

    new_m, new_q = interleaved(mv_batch(fresh=True), qjs_batch, s.batches)
    # The pool holds k idle instances after the first batch (the warm-up), so every timed
    # restore takes a recycled one.
    rec_m, rec_q = interleaved(mv_batch(fresh=False), qjs_batch, s.batches)
    size = f"{len(trivial)} B snapshot"
    return [time_row(f"new ready context, brand-new instance ({size})", new_m, new_q),
            time_row(f"new ready context, recycled instance ({size})", rec_m, rec_q)]


def persist_row(s: Settings) -> Row:
    k = s.contexts
    vm = mvactors.VM.restore(mvactors.compile(STATE_JS))
    ctx = quickjs.Context()
    ctx.eval(QJS_STATE)
    for i in range(STATE_CALLS):
        vm.exports[1](i)
        ctx.get("add")(i)
    snapshot_size = len(vm.create_snapshot(collect=True))
    json_size = len(ctx.get("persist")())
    current: list[Any] = [vm, ctx]  # the live context of each engine, replaced by each resume

    def mv_batch() -> int:
        vm = current[0]
        for _ in range(k):
            resumed = mvactors.VM.restore(vm.create_snapshot(collect=True))
            resumed.exports[2]()
            vm.close()
            vm = resumed
        current[0] = vm
        return k

    def qjs_batch() -> int:
        ctx = current[1]
        for _ in range(k):
            text = ctx.get("persist")()
            resumed = quickjs.Context()
            resumed.eval(QJS_STATE)
            resumed.get("resume")(text)
            resumed.get("count")()
            ctx = resumed
        current[1] = ctx
        return k

    m, q = interleaved(timed(mv_batch), timed(qjs_batch), s.batches)
    assert current[0].exports[2]() == current[1].get("count")() == STATE_CALLS
    current[0].close()
    return time_row(f"persist + resume, GC first ({snapshot_size} B snapshot, {json_size} B JSON)", m, q)


# ---------------------------------------------------------------- actors


async def actor_rows(s: Settings, trivial: bytes) -> list[Row]:
    loop = asyncio.get_running_loop()
    n, rounds = s.actors, s.rounds

    async def serve(queue: asyncio.Queue[tuple[tuple[Any, ...], asyncio.Future[Any] | None]],
                    fn: Callable[..., Any]) -> None:
        while True:
            args, reply = await queue.get()
            try:
                result = fn(*args)
            except Exception as exc:
                if reply is not None:
                    reply.set_exception(exc)
            else:
                if reply is not None:
                    reply.set_result(result)
            queue.task_done()

    async with mvactors.Runtime() as rt:
        actors = [await rt.spawn(trivial) for _ in range(n)]
        contexts = []
        queues: list[asyncio.Queue[tuple[tuple[Any, ...], asyncio.Future[Any] | None]]] = []
        tasks = []
        for _ in range(n):
            ctx = quickjs.Context()
            ctx.eval(QJS_TRIVIAL)
            queue: asyncio.Queue[tuple[tuple[Any, ...], asyncio.Future[Any] | None]] = asyncio.Queue()
            contexts.append(ctx)
            queues.append(queue)
            tasks.append(asyncio.create_task(serve(queue, ctx.get("inc"))))

        async def mv_call() -> tuple[int, int]:
            t0 = time.perf_counter_ns()
            for _ in range(rounds):
                for actor in actors:
                    await actor.call(1, 5)
            return rounds * n, time.perf_counter_ns() - t0

        async def qjs_call() -> tuple[int, int]:
            t0 = time.perf_counter_ns()
            for _ in range(rounds):
                for queue in queues:
                    reply = loop.create_future()
                    queue.put_nowait(((5,), reply))
                    await reply
            return rounds * n, time.perf_counter_ns() - t0

        async def mv_send() -> tuple[int, int]:
            t0 = time.perf_counter_ns()
            for _ in range(rounds):
                for _ in range(2):
                    for actor in actors:
                        await actor.send(1, 5)
                await rt.wait_idle()
            return 2 * rounds * n, time.perf_counter_ns() - t0

        async def qjs_send() -> tuple[int, int]:
            t0 = time.perf_counter_ns()
            for _ in range(rounds):
                for _ in range(2):
                    for queue in queues:
                        queue.put_nowait(((5,), None))
                for queue in queues:
                    await queue.join()
            return 2 * rounds * n, time.perf_counter_ns() - t0

        try:
            call_m, call_q = await interleaved_async(mv_call, qjs_call, s.batches)
            send_m, send_q = await interleaved_async(mv_send, qjs_send, s.batches)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return [time_row(f"actor turns, `await call` round-robin over {n:,} actors", call_m, call_q),
            time_row(f"actor turns, `send` {TIMES}2 to {n:,} actors, then idle (per message)", send_m, send_q)]


# ---------------------------------------------------------------- guest compute


def compute_row(s: Settings) -> Row:
    vm = mvactors.VM.restore(mvactors.compile(COMPUTE_JS))
    m_compute = vm.exports[1]
    ctx = quickjs.Context()
    ctx.eval(QJS_COMPUTE)
    q_compute = ctx.get("compute")
    assert m_compute(PASSES) == q_compute(PASSES)

    def runs(fn: Callable[[int], object]) -> Batch:
        def batch() -> int:
            for _ in range(s.compute_runs):
                fn(PASSES)
            return s.compute_runs
        return timed(batch)

    try:
        m, q = interleaved(runs(m_compute), runs(q_compute), s.batches)
    finally:
        vm.close()
    return time_row(f"guest compute (1000 objects {TIMES} {PASSES} passes)", m, q)


# ---------------------------------------------------------------- memory (subprocesses)


def context_maker(engine: str, trivial: bytes) -> Callable[[], object]:
    """A function making one live context of ``engine`` that has been called once."""
    if engine == "mvactors":
        def make_vm() -> object:
            vm = mvactors.VM.restore(trivial)
            vm.exports[1](1)
            return vm
        return make_vm

    def make_context() -> object:
        ctx = quickjs.Context()
        ctx.eval(QJS_TRIVIAL)
        ctx.get("inc")(1)
        return ctx
    return make_context


def child_rss(engine: str, trivial: bytes, n: int) -> dict[str, Any]:
    make = context_maker(engine, trivial)
    warm = [make() for _ in range(10)]  # engine loaded, code paths touched, before the baseline
    gc.collect()
    before = rss_kib()
    live = [make() for _ in range(n)]
    gc.collect()
    after = rss_kib()
    del warm, live
    return {"kib": (after - before) / n, "n": n}


def child_live(engine: str, trivial: bytes, cap: int) -> dict[str, Any]:
    make = context_maker(engine, trivial)
    warm = make()  # engine loaded before the baseline
    before = rss_kib()
    live: list[object] = []
    error = None
    try:
        while len(live) < cap:
            live.append(make())
            if len(live) % 5_000 == 0:  # a count survives the child crashing instead of raising
                print(json.dumps({"live": len(live)}), flush=True)
    except Exception as exc:  # mvactors.EngineExhausted, MemoryError, or whatever quickjs raises
        error = f"{type(exc).__name__}: {exc}"[:200]
    del warm
    return {"live": len(live), "cap": cap, "error": error, "kib": (rss_kib() - before) / max(len(live), 1)}


def run_child(kind: str, engine: str, trivial: bytes, count: int) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--engine", engine, "--count", str(count),
         "--snapshot", trivial.hex()],
        capture_output=True, text=True, timeout=600, cwd=ROOT, check=False)
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    result: dict[str, Any] = results[-1] if results else {}
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        result["failed"] = f"exit {proc.returncode}" + (f": {lines[-1][:200]}" if lines else "")
    return result


def rss_row(s: Settings, trivial: bytes) -> Row:
    results = {engine: run_child("rss", engine, trivial, s.rss) for engine in ("mvactors", "quickjs")}
    cells = [f"{r['kib']:.1f} KiB" if "kib" in r else f"failed ({r.get('failed')})" for r in results.values()]
    mv, qjs = results["mvactors"].get("kib"), results["quickjs"].get("kib")
    return Row(f"RSS per live context ({s.rss:,} live, each called once; KiB, quickjs ÷ mvactors)",
               cells[0], cells[1], times(qjs / mv if mv and qjs else None))


def live_row(s: Settings, trivial: bytes) -> Row:
    caps = {"mvactors": s.live, "quickjs": s.live_quickjs}
    results = {engine: run_child("live", engine, trivial, cap) for engine, cap in caps.items()}
    cells = []
    at_least = {}  # engine -> the count is only a lower bound of what fits (it stopped at its cap, or crashed)
    for engine, r in results.items():
        count = r.get("live", 0)
        at_least[engine] = "failed" in r or not r.get("error")
        if "failed" in r:
            cells.append(f"≥ {count:,} (crashed, {r['failed']})")
        elif r.get("error"):
            cells.append(f"{count:,} ({r['error']})")
        else:
            cells.append(f"{count:,} (cap)")
    mv, qjs = results["mvactors"].get("live", 0), results["quickjs"].get("live", 0)
    ratio = times(mv / qjs if mv and qjs else None)
    # A count that stopped at its cap says nothing of the limit, so neither does a ratio of caps.
    if at_least["mvactors"] and at_least["quickjs"]:
        ratio = f"{ratio} (caps)"
    elif at_least["mvactors"] or at_least["quickjs"]:
        ratio = ("≥ " if at_least["mvactors"] else "≤ ") + ratio
    return Row("most live contexts in one process (count, mvactors ÷ quickjs)", cells[0], cells[1], ratio)


# ---------------------------------------------------------------- report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer, shorter batches and small counts")
    parser.add_argument("--rss", type=int, help="live contexts measured for RSS (10,000; --quick 2,000)")
    parser.add_argument("--live", type=int,
                        help="cap of mvactors' most-live-contexts count (100,000; --quick 5,000; 0 skips the row)")
    parser.add_argument("--live-quickjs", type=int, help="cap of quickjs' count (50,000; --quick 5,000)")
    parser.add_argument("--child", choices=("rss", "live"), help=argparse.SUPPRESS)
    parser.add_argument("--engine", choices=("mvactors", "quickjs"), help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--snapshot", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if quickjs is None:
        print('bench/peers.py: quickjs is not installed; pip install -e ".[bench]"', file=sys.stderr)
        return
    if args.child:
        child = child_rss if args.child == "rss" else child_live
        print(json.dumps(child(args.engine, bytes.fromhex(args.snapshot), args.count)), flush=True)
        os._exit(0)  # tearing down 100,000 contexts would take longer than making them
    chosen = {option: getattr(args, option) for option in ("rss", "live", "live_quickjs")}
    s = dataclasses.replace(QUICK if args.quick else FULL,
                            **{option: value for option, value in chosen.items() if value is not None})

    trivial = mvactors.compile(TRIVIAL_JS)
    rows = call_rows(s)
    rows += new_context_rows(s, trivial)
    rows.append(persist_row(s))
    rows += anyio.run(actor_rows, s, trivial, backend="asyncio")
    rows.append(compute_row(s))
    rows.append(rss_row(s, trivial))
    if s.live:
        rows.append(live_row(s, trivial))

    version = importlib.metadata.version("quickjs")
    print(f"mvactors call path: {_calls.CALL_PATH} ({_calls.CALL_PATH_REASON}); quickjs {version}; "
          f"{s.batches} interleaved batches, medians; ratio above 1 = mvactors ahead")
    width = max(len(row.name) for row in rows)
    value_width = max(10, *(len(row.mvactors) for row in rows), *(len(row.quickjs) for row in rows))
    ratio_width = max(7, *(len(row.ratio) for row in rows))
    print(f"{'row':<{width}}  {'mvactors':>{value_width}}  {'quickjs':>{value_width}}  {'ratio':>{ratio_width}}")
    for row in rows:
        print(f"{row.name:<{width}}  {row.mvactors:>{value_width}}  {row.quickjs:>{value_width}}  "
              f"{row.ratio:>{ratio_width}}")


if __name__ == "__main__":
    main()

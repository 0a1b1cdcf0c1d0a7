"""mvactors next to the engine a Python user would pick instead: QuickJS's C extension (PyPI ``quickjs``).

    python bench/peers.py            # full run (~20 s on 2 cores)
    python bench/peers.py --quick    # fewer batches

Both engines run in this one process with their batches interleaved (mvactors,
quickjs, mvactors, ...), so machine speed and load cancel out of the ratios.
Every time is the median over the batches of ns per operation; the ratio is
quickjs ÷ mvactors, so above 1 means mvactors is ahead (issue 18's targets).
``MVACTORS_PURE=1`` measures mvactors' pure-Python call path instead of the C one.

Rows:

* trivial export call ``(x) => x + 1`` from Python;
* guest -> Python host round trip: per call, (a guest loop calling an empty host
  function) - (the same loop without the call), over the loop's length.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import statistics
import sys
import time
from collections.abc import Callable

import mvactors
from mvactors.vm import _calls

try:
    import quickjs
except ImportError:  # pragma: no cover - a bench extra
    quickjs = None

TIMES = "\N{MULTIPLICATION SIGN}"
TRIVIAL_JS = "vmExport(1, (x) => x + 1);"
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


def interleaved(a: Callable[[], int], b: Callable[[], int], batches: int) -> tuple[float, float]:
    """Medians of ns per operation of ``a`` and ``b`` (each returns its operation count), batches alternated."""
    a()
    b()  # warm up
    sa: list[float] = []
    sb: list[float] = []
    for _ in range(batches):
        for fn, samples in ((a, sa), (b, sb)):
            t0 = time.perf_counter_ns()
            n = fn()
            samples.append((time.perf_counter_ns() - t0) / n)
    return statistics.median(sa), statistics.median(sb)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer, shorter batches")
    args = parser.parse_args()
    if quickjs is None:
        print('bench/peers.py: quickjs is not installed; pip install -e ".[bench]"', file=sys.stderr)
        return
    batches, calls, loop = (5, 5_000, 5_000) if args.quick else (21, 30_000, 30_000)

    vm = mvactors.VM.restore(mvactors.compile(TRIVIAL_JS))
    inc = vm.exports[1]
    loops = mvactors.VM.restore(mvactors.compile(LOOP_JS), {1: lambda: None})
    m_with, m_without = loops.exports[1], loops.exports[2]
    ctx = quickjs.Context()
    ctx.add_callable("f", lambda: None)
    ctx.eval(QJS_LOOP)
    q_inc, q_with, q_without = ctx.get("inc"), ctx.get("with_call"), ctx.get("without_call")
    assert inc(1) == q_inc(1) == 2

    def call_batch(fn: Callable[[int], object]) -> Callable[[], int]:
        def batch() -> int:
            for _ in range(calls):
                fn(5)
            return calls
        return batch

    def loop_batch(fn: Callable[[int], object]) -> Callable[[], int]:
        def batch() -> int:
            fn(loop)
            return loop
        return batch

    rows = []
    m, q = interleaved(call_batch(inc), call_batch(q_inc), batches)
    rows.append(("trivial export call `(x) => x + 1`", m, q))
    mw, qw = interleaved(loop_batch(m_with), loop_batch(q_with), batches)
    mo, qo = interleaved(loop_batch(m_without), loop_batch(q_without), batches)
    rows.append(("guest → Python host round trip", mw - mo, qw - qo))
    vm.close()
    loops.close()

    version = importlib.metadata.version("quickjs")
    print(f"mvactors call path: {_calls.CALL_PATH} ({_calls.CALL_PATH_REASON}); quickjs {version}; "
          f"{batches} interleaved batches, medians")
    print(f"{'row':<40} {'mvactors':>10} {'quickjs':>10} {'quickjs ÷ mvactors':>20}")
    for name, mv_ns, qjs_ns in rows:
        print(f"{name:<40} {mv_ns:>8.0f} ns {qjs_ns:>7.0f} ns {qjs_ns / mv_ns:>19.2f}{TIMES}")


if __name__ == "__main__":
    main()

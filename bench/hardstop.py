"""What the hard stop (epoch interruption, VM.restore(time_limit=)) costs.

    python bench/hardstop.py [--runs N]

The same snapshot restored with the default time limit and with
``time_limit=None``, which runs on a second engine compiled without epoch
checks; calls alternate run by run so machine drift hits both alike.  Rows:
bench/vm.py's guest loop (1000 objects x 100 passes) and its trivial export
call.  The ratio is the median of per-pair ratios.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from common import cpu_model
from vm import OBJECTS_JS as GUEST_LOOP_JS

import mvactors
from mvactors.vm import _wasm

TIMES = "\N{MULTIPLICATION SIGN}"

# bench/vm.py's guest loop, plus a trivial export for the call row.
OBJECTS_JS = GUEST_LOOP_JS + "vmExport(3, (x) => x + 1);\n"


def ready(snapshot: bytes, time_limit: float | None) -> mvactors.VM:
    vm = mvactors.VM.restore(snapshot, time_limit=time_limit)
    vm.exports[1]()
    return vm


def paired(a: Callable[[], object], b: Callable[[], object], runs: int) -> tuple[float, float, float]:
    """Median ns of a and of b, and the median of b/a over adjacent pairs (order alternating)."""
    ta: list[int] = []
    tb: list[int] = []
    for i in range(runs):
        for fn, out in ((a, ta), (b, tb)) if i % 2 else ((b, tb), (a, ta)):
            t0 = time.perf_counter_ns()
            fn()
            out.append(time.perf_counter_ns() - t0)
    ratios = [y / x for x, y in zip(ta, tb, strict=True)]
    return statistics.median(ta), statistics.median(tb), statistics.median(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=60)
    args = parser.parse_args()
    snapshot = mvactors.compile(OBJECTS_JS)
    plain = ready(snapshot, None)
    stopped = ready(snapshot, _wasm.DEFAULT_TIME_LIMIT)
    print(f"{cpu_model()}; {args.runs} paired runs per row\n")
    rows = []
    a, b = plain.exports[2], stopped.exports[2]
    a(100), b(100)
    na, nb, ratio = paired(lambda: a(100), lambda: b(100), args.runs)
    name = f"1000 objects {TIMES} 100 passes guest loop"
    rows.append((name, f"{na / 1e6:.2f} ms", f"{nb / 1e6:.2f} ms", ratio, 1.03))
    ia, ib = plain.exports[3], stopped.exports[3]
    calls = 2000

    def burst(fn: Callable[[int], object]) -> Callable[[], None]:
        def run() -> None:
            for _ in range(calls):
                fn(5)
        return run

    na, nb, ratio = paired(burst(ia), burst(ib), args.runs)
    rows.append(("trivial export call", f"{na / calls / 1e3:.2f} µs", f"{nb / calls / 1e3:.2f} µs", ratio, 1.03))
    print("| row | time_limit=None | default time limit | ratio | target | result |")
    print("|---|---|---|---|---|---|")
    for row_name, without, with_, r, limit in rows:
        verdict = "PASS" if r <= limit else "MISS"
        print(f"| {row_name} | {without} | {with_} | {r:.3f}{TIMES} | ≤ {limit}{TIMES} | {verdict} |")


if __name__ == "__main__":
    main()

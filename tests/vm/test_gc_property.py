"""Property test: no heap the guest may build dies in the GC or in a snapshot (issue 13).

Hypothesis generates guest programs: turns of operations that build objects of up
to ~1,100 properties (some "deleted": the compiler has no ``delete``, so they are
set to ``undefined``), arrays grown by push and shrunk by length assignment, nested
closures, strings, Uint8Arrays of every size from 0, and references between all of
them (cycles), spread over several turns and taken up to the heap limit.  One fixed
guest script, compiled by the real Microvium compiler, interprets the operations.

After every turn the whole reachable state is dumped (a deep walk that sends every
value to the host, cycles as back-references), then ``run_gc()``,
``run_gc(squeeze=True)`` and ``create_snapshot()`` + restore each must leave an
identical dump; the next turn runs on the restored VM.  The WebAssembly VM and the
native reference build (in a worker process: a fatal error aborts it) must agree
on every result, every dump and every error.

CI runs a bounded number of examples; ``MVACTORS_GC_PROPERTY_SECONDS=1200`` runs
for that long instead (e.g. ``pytest tests/vm/test_gc_property.py -q -s``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))

from conftest import compile_source  # noqa: E402

import mvactors  # noqa: E402
from mvactors.errors import MicroviumError, VMUnusable, error_name  # noqa: E402
from mvactors.testing import NativeVM, native_available  # noqa: E402
from mvactors.vm._abi import MAX_HEAP  # noqa: E402

GUEST = r"""
const emit = vmImport(1);
let objs = [];
let turn = 0;
const CHUNK = 'abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-_';

function rec(t, v) { const r = {}; r.t = t; r.v = v; r.k = []; r.c = 0; return r; }

function val(kind, x) {
  if (kind === 0) return x;
  if (kind === 1) return 'v' + x;
  if (kind === 2) return x + 0.5;
  if (kind === 3) return objs.length ? objs[x % objs.length] : null;
  if (kind === 4) return undefined;
  return null;
}

function closure(depth, seed) {
  let f = () => [seed];
  for (let i = 0; i < depth; i++) {
    const g = f;
    const own = 'c' + (seed + i);
    f = () => { const a = g(); a.push(own); return a; };
  }
  return f;
}

function str(n) {
  let s = '';
  let left = n;
  while (left >= 64) { s = s + CHUNK; left = left - 64; }
  for (let i = 0; i < left; i++) s = s + 'x';
  return s;
}

function apply(op, a, b, c) {
  if (op === 0) { objs.push(rec(0, {})); return; }
  if (op === 1) { objs.push(rec(1, [])); return; }
  if (op === 7) { objs.push(rec(2, closure(c, b))); return; }
  if (op === 8) { objs.push(rec(3, str(c))); return; }
  if (op === 9) {
    const u = Microvium.newUint8Array(c);
    for (let i = 0; i < c; i++) u[i] = (i * 7 + b) & 255;
    objs.push(rec(4, u));
    return;
  }
  if (op === 12) { for (let i = 0; i < c; i++) { const g = rec(0, {}); g.v.x = 'g' + i; } return; }
  const n = objs.length;
  if (n === 0) return;
  const i = a % n;
  const r = objs[i];
  if (op === 11) { objs[i] = rec(0, {}); return; }
  if (r.t === 0) {
    if (op === 2 || op === 10) {
      for (let j = 0; j < c; j++) {
        const key = 'p' + r.c;
        r.c = r.c + 1;
        r.v[key] = op === 10 ? objs[(b + j) % n] : val(b % 6, j);
        r.k.push(key);
      }
    } else if (op === 3 && r.k.length > 0) {
      for (let j = 0; j < c; j++) r.v[r.k[(b + j * 13) % r.k.length]] = undefined;
    }
  } else if (r.t === 1) {
    if (op === 4 || op === 10) {
      for (let j = 0; j < c; j++) r.v.push(op === 10 ? objs[(b + j) % n] : val(b % 6, j));
    } else if (op === 5) {
      const len = r.v.length;
      r.v.length = c < len ? len - c : 0;
    } else if (op === 6) {
      r.v.length = c;
    }
  }
}

vmExport(1, (op, a, b, c) => { apply(op, a, b, c); return objs.length; });
vmExport(3, () => { turn = turn + 1; return turn; });

let seen = [];
function walk(x) {
  if (typeof x !== 'object' || x === null) { emit(x); return; }
  for (let i = 0; i < seen.length; i++) { if (seen[i] === x) { emit('@' + i); return; } }
  seen.push(x);
  emit('#' + x.t);
  const v = x.v;
  if (x.t === 0) {
    emit(x.c);
    for (let i = 0; i < x.k.length; i++) { emit(x.k[i]); walk(v[x.k[i]]); }
  } else if (x.t === 1) {
    emit(v.length);
    for (let i = 0; i < v.length; i++) walk(v[i]);
  } else if (x.t === 2) {
    const got = v();
    for (let i = 0; i < got.length; i++) emit(got[i]);
  } else {
    emit(v);
  }
}

vmExport(2, () => {
  seen = [];
  emit(turn);
  emit(objs.length);
  for (let i = 0; i < objs.length; i++) walk(objs[i]);
  seen = [];
  return 0;
});
"""

RUN_SECONDS = float(os.environ.get("MVACTORS_GC_PROPERTY_SECONDS", "0"))
# CI: ~10 examples a second on one core (half of them near a limit), so a run ends by its count
# or, on a slow machine, after CI_SECONDS.
CI_EXAMPLES = 400
CI_SECONDS = 50.0

Op = tuple[int, int, int, int]
Program = list[list[Op]]

# Sizes cluster where the engine's limits are: a bucket (63 properties), one
# allocation (1,022 properties, 2,047 array slots, 4,094 string and 4,095 byte
# Uint8Array bytes) and just past them.
_props = st.one_of(st.integers(0, 70), st.sampled_from([62, 63, 64, 300, 511, 1021, 1022, 1023, 1100]))
_items = st.one_of(st.integers(0, 40), st.sampled_from([1023, 1024, 1025, 2046, 2047, 2048, 2100]))
_bytes = st.one_of(st.integers(0, 16), st.sampled_from([253, 254, 255, 4093, 4094, 4095, 4096]))
_ix = st.integers(0, 50)


def _op() -> st.SearchStrategy[Op]:
    return st.one_of(
        st.tuples(st.just(0), _ix, _ix, st.just(0)),  # new object
        st.tuples(st.just(1), _ix, _ix, st.just(0)),  # new array
        st.tuples(st.just(2), _ix, _ix, _props),  # add properties
        st.tuples(st.just(3), _ix, _ix, st.integers(0, 50)),  # "delete" properties
        st.tuples(st.just(4), _ix, _ix, _items),  # push
        st.tuples(st.just(5), _ix, _ix, st.integers(0, 60)),  # pop (length - c)
        st.tuples(st.just(6), _ix, _ix, _items),  # length = c
        st.tuples(st.just(7), _ix, _ix, st.integers(0, 24)),  # nested closures
        st.tuples(st.just(8), _ix, _ix, _bytes),  # string
        st.tuples(st.just(9), _ix, _ix, _bytes),  # Uint8Array
        st.tuples(st.just(10), _ix, _ix, st.integers(0, 20)),  # references (cycles)
        st.tuples(st.just(11), _ix, _ix, st.just(0)),  # drop a root
        st.tuples(st.just(12), _ix, _ix, st.integers(0, 200)),  # garbage
    )


programs: st.SearchStrategy[Program] = st.lists(st.lists(_op(), min_size=1, max_size=12), min_size=1, max_size=6)


# ---- running a program on either build ----


def canon(value: Any) -> Any:
    """A JSON-able, exact form of a value the guest emitted or returned."""
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return value
    if isinstance(value, float):
        return ["float", value.hex()]
    if isinstance(value, bytes | bytearray):
        return ["bytes", bytes(value).hex()]
    if hasattr(value, "to_python"):
        return canon(value.to_python())
    if isinstance(value, list | tuple):
        return [canon(v) for v in value]
    if isinstance(value, dict):
        return {k: canon(v) for k, v in value.items()}
    if hasattr(value, "__bytes__"):
        return ["bytes", bytes(value).hex()]
    return [type(value).__name__, repr(value)]


def error(exc: BaseException) -> list[Any]:
    if isinstance(exc, VMUnusable):
        # A fatal error during a GC or snapshot gives the heap in use when it began (the native
        # worker reads the same figure from the native build's abort message).
        seen = re.search(r"([\d,]+) B of the [\d,]+ B heap limit in use", str(exc))
        heap = int(seen.group(1).replace(",", "")) if seen else None
        return ["fatal", error_name(exc.code) if isinstance(exc.code, int) else exc.code, heap]
    if isinstance(exc, MicroviumError):
        return ["error", type(exc).__name__, exc.code, canon(getattr(exc, "value", None))]
    raise exc


class Driver:
    """One build's VM behind the four operations a program needs."""

    def __init__(self, native: bool, snapshot: bytes) -> None:
        self.native = native
        self.tokens: list[Any] = []
        self.vm: Any = None
        self.restore(snapshot)

    def _emit(self, value: Any) -> None:
        self.tokens.append(canon(value))

    def restore(self, snapshot: bytes) -> None:
        if self.vm is not None:
            self.close()
        if self.native:
            self.vm = NativeVM.restore(snapshot, {1: self._emit})
        else:
            self.vm = mvactors.VM.restore(snapshot, {1: self._emit})

    def call(self, export: int, *args: Any) -> Any:
        if self.native:
            return self.vm.call(export, *args)
        return self.vm.exports[export](*args)

    def dump(self) -> list[Any]:
        self.tokens = []
        self.call(2)
        return self.tokens

    def snapshot(self) -> bytes:
        # NativeVM snapshots the heap as it is; VM.create_snapshot() by default first collects when
        # the heap has grown by a quarter.  The two builds must start each turn from the same heap
        # (near the limit, garbage decides whether a later GC fits), so both take it as it is.
        if self.native:
            return bytes(self.vm.create_snapshot())
        return bytes(self.vm.create_snapshot(collect=False))

    def close(self) -> None:
        self.vm.close()
        self.vm = None


def run_program(native: bool, snapshot: bytes, program: Program, report: Callable[[list[Any]], None]) -> None:
    """Run ``program``, reporting events as they happen (the native worker flushes each):
    ``["begin", turn]``, ``["op", result or error]``, ``["checks"]``,
    ``["dump", state, [same after run_gc, after squeeze, after snapshot + restore]]``, ``["after", error]``.
    """
    driver = Driver(native, snapshot)
    try:
        for number, turn in enumerate(program):
            report(["begin", number])
            driver.call(3)
            for op in turn:
                try:
                    report(["op", canon(driver.call(1, *op))])
                except MicroviumError as exc:
                    report(["op", error(exc)])
                    if isinstance(exc, VMUnusable):
                        return
            report(["checks"])
            try:
                before = driver.dump()
                same = []
                driver.vm.run_gc()
                same.append(driver.dump() == before)
                driver.vm.run_gc(squeeze=True)
                same.append(driver.dump() == before)
                driver.restore(driver.snapshot())
                same.append(driver.dump() == before)
                report(["dump", before, same])
            except MicroviumError as exc:
                report(["after", error(exc)])
                return
    finally:
        if driver.vm is not None:
            driver.close()


def wasm_events(snapshot: bytes, program: Program) -> list[Any]:
    events: list[Any] = []
    run_program(False, snapshot, program, events.append)
    return events


class NativeWorker:
    """This file run as ``--native-worker``: one process, restarted after each fatal abort."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None

    def _start(self) -> subprocess.Popen[str]:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen([sys.executable, __file__, "--native-worker"], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        return self.proc

    def run(self, snapshot: bytes, program: Program) -> list[Any]:
        proc = self._start()
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        proc.stdin.write(json.dumps({"snapshot": snapshot.hex(), "program": program}) + "\n")
        proc.stdin.flush()
        events: list[Any] = []
        for line in proc.stdout:
            event = json.loads(line)
            if event == ["done"]:
                return events
            events.append(event)
        # The process ended: the native glue aborts on a fatal error, and says which.
        proc.wait()
        stderr = proc.stderr.read()
        self.proc = None
        abort = re.search(r"^microvium fatal error (\d+)( during garbage collection| while creating a snapshot)?"
                          r" \(heap (\d+) B", stderr, re.MULTILINE)
        if abort is None:
            raise AssertionError(f"the native worker died without a fatal error: {stderr[-2000:]}")
        fatal = ["fatal", error_name(int(abort.group(1))), int(abort.group(3)) if abort.group(2) else None]
        events.append(["after", fatal] if events and events[-1] == ["checks"] else ["op", fatal])
        return events

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        self.proc = None


def _worker_main() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        program = [[tuple(op) for op in turn] for turn in request["program"]]

        def report(event: list[Any]) -> None:
            sys.stdout.write(json.dumps(event) + "\n")
            sys.stdout.flush()

        run_program(True, bytes.fromhex(request["snapshot"]), program, report)
        report(["done"])


# ---- the tests ----

pytestmark = pytest.mark.skipif(not native_available(), reason="the native reference engine is not built")


@pytest.fixture(scope="module")
def guest() -> bytes:
    return compile_source(GUEST)


@pytest.fixture(scope="module")
def native_worker() -> Iterator[NativeWorker]:
    worker = NativeWorker()
    yield worker
    worker.close()


def check(guest: bytes, native_worker: NativeWorker, program: Program) -> list[Any]:
    wasm = wasm_events(guest, program)
    native = native_worker.run(guest, program)
    assert wasm == native, "the wasm and native builds disagree"
    for event in wasm:
        if event[0] == "dump":
            assert event[2] == [True, True, True], "run_gc, squeeze or snapshot + restore changed the state"
        # Nothing these programs do may be fatal but a full heap: the heap limit itself, or a
        # collection that began with the heap near it (at least 3/4 of MAX_HEAP) and found no room
        # in the 64 KB RAM page to copy the live heap into (docs/guest-language.md, "Limits").
        if event[0] in ("op", "after") and isinstance(event[1], list) and event[1][:1] == ["fatal"]:
            _, name, heap = event[1]
            assert name == "MVM_E_OUT_OF_MEMORY" or (
                name == "MVM_E_MALLOC_FAIL" and heap is not None and heap * 4 >= MAX_HEAP * 3), event
    return wasm


def test_gc_property_bounded(guest: bytes, native_worker: NativeWorker) -> None:
    """A bounded run (CI: the same CI_EXAMPLES programs every time, for at most CI_SECONDS);
    MVACTORS_GC_PROPERTY_SECONDS runs fresh random programs for that long instead."""
    long_run = RUN_SECONDS > 0
    deadline = time.monotonic() + (RUN_SECONDS if long_run else CI_SECONDS)
    examples = 0

    @settings(max_examples=200 if long_run else CI_EXAMPLES, deadline=None, derandomize=not long_run,
              suppress_health_check=list(HealthCheck), database=None)
    @given(programs)
    def prop(program: Program) -> None:
        nonlocal examples
        if time.monotonic() > deadline:
            return  # out of time: hypothesis finishes its remaining (cheap) examples
        examples += 1
        check(guest, native_worker, program)

    prop()
    while long_run and time.monotonic() < deadline:
        prop()  # each round draws new programs (derandomize is off)
    assert examples >= min(CI_EXAMPLES, 50) or long_run, f"only {examples} examples ran in {CI_SECONDS} s"
    if long_run:
        print(f"\ngc property: {examples} examples in {RUN_SECONDS:g} s, all passed")


def test_known_heavy_program(guest: bytes, native_worker: NativeWorker) -> None:
    """The shapes of issue 13 in one program: big objects, long arrays, limits, cycles, several turns."""
    # (1,100 properties with these strings and a 4 KB string would not fit 29,696 B together: the
    # big objects are tests/vm/test_gc_limits.py's.)
    program: Program = [
        [(0, 0, 0, 0), (2, 0, 1, 300), (3, 0, 5, 20)],
        [(1, 0, 0, 0), (4, 1, 0, 2047), (5, 1, 0, 1000), (10, 1, 0, 5), (9, 0, 3, 0), (9, 0, 3, 4095)],
        [(8, 0, 0, 4094), (7, 0, 9, 24), (10, 0, 0, 10), (11, 2, 0, 0), (12, 0, 0, 100)],
        [(4, 1, 0, 2000)],  # past 2,047 elements: a RangeError, the VM lives on
        [(11, 4, 0, 0), (2, 0, 0, 100)],
    ]
    events = check(guest, native_worker, program)
    assert sum(event[0] == "dump" for event in events) == len(program)
    thrown = [event[1] for event in events if event[0] == "op" and isinstance(event[1], list)]
    message = "RangeError: invalid array length (an array holds 0 to 2047 elements)"
    assert thrown == [["error", "GuestError", thrown[0][2], message]]


def test_closure_chain_divergence(guest: bytes, native_worker: NativeWorker) -> None:
    """Found by this test: the compiler's loop-body scope had no parent link (engine/compiler-patches.cjs),
    so ``seed`` read garbage; after five objects the wasm build read ``'cNaN'`` where native read ``'c10'``."""
    events = check(guest, native_worker, [[(0, 0, 0, 0)] * 5 + [(7, 0, 0, 11)]])
    dump = next(event[1] for event in events if event[0] == "dump")
    assert dump[-12:] == [0] + [f"c{i}" for i in range(11)]


def test_the_last_results_do_not_outlive_the_next_call(guest: bytes, native_worker: NativeWorker) -> None:
    """Found by this test: the glue's result handle kept the previous call's thrown string (66 B)
    alive through the next call's collections in one driver and not the other, so near the heap
    limit the two builds failed with different heap figures (29,680 B against 29,614 B)."""
    check(guest, native_worker, [[(1, 0, 0, 0), (2, 0, 0, 0)], [(8, 0, 0, 253), (8, 0, 0, 4095), (4, 0, 2, 2046)]])


def test_the_page_fills_at_the_same_step_on_both_builds(guest: bytes, native_worker: NativeWorker) -> None:
    """Found by this test: the native build's structures are larger (64-bit pointers), so its RAM
    page filled first: a collection at 29,560 B died natively and not in wasm.  The wasm build now
    pads them to the native sizes (MVX_LP64_PAD), and both die at the same step, truthfully."""
    program: Program = [
        [(9, 7, 2, 5), (11, 0, 16, 0), (1, 47, 37, 0), (4, 49, 50, 25), (6, 20, 41, 1024), (7, 1, 23, 8),
         (9, 39, 6, 5), (8, 47, 5, 1), (12, 37, 8, 28), (5, 19, 26, 14), (5, 46, 24, 46), (4, 6, 13, 2100)],
        [(9, 0, 34, 4093), (10, 50, 3, 1), (0, 20, 36, 0), (9, 34, 5, 0), (7, 22, 34, 7), (7, 42, 16, 3),
         (12, 42, 20, 94), (10, 23, 42, 0), (10, 20, 28, 0)],
        [(3, 34, 49, 7), (12, 22, 12, 193), (4, 44, 7, 38), (7, 49, 43, 11), (0, 42, 12, 0)],
        [(0, 42, 12, 0), (0, 25, 39, 0)],
        [(9, 45, 43, 13)],
        [(8, 19, 34, 253), (8, 26, 29, 4093), (9, 37, 17, 4094), (2, 15, 45, 300), (12, 29, 37, 95),
         (4, 6, 13, 2100), (6, 0, 20, 2047), (2, 10, 45, 1023)],
    ]
    events = check(guest, native_worker, program)
    assert events[-1] == ["after", ["fatal", "MVM_E_MALLOC_FAIL", 29560]]


if __name__ == "__main__" and sys.argv[1:] == ["--native-worker"]:
    _worker_main()

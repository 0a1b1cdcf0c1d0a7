"""The WebAssembly VM must behave exactly like the same engine built natively with gcc.

Each guest script in tests/guest/fidelity_*.js runs a fixed plan of calls on
``mvactors.VM`` and on ``mvactors.testing.NativeVM``; results (and the arguments
host imports receive) must be identical call by call, bit for bit for floats.
Snapshots cross over: a state reached in one build, snapshotted and restored
in the other, must continue with the same results.
"""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import compile_source

import mvactors
from mvactors.errors import GasExhausted, GuestError, HostFunctionError, MicroviumError
from mvactors.testing import NativeVM, native_available
from mvactors.vm import GuestRef

pytestmark = pytest.mark.skipif(
    not native_available(),
    reason="native reference engine mvactors/_engine/libmvx_native.so is not built (python engine/build.py)",
)

GUEST = Path(__file__).resolve().parents[1] / "guest"

Call = tuple[Any, ...]  # (export id, *args)

# Numbers chosen around the engine's representation edges: int14 (±8192),
# int32, floats, and the IEEE specials.
NUMBERS: list[int | float] = [
    0, 1, -1, 3, -7, 8191, 8192, -8192, -8193, 2147483647, -2147483648,
    2.5, -2.5, 0.1, 0.5, 1e10, 1e300, 1e-300, -0.0, math.inf, -math.inf, math.nan,
]  # fmt: skip

# The engine computes int32 `a % b` with C's `%`: INT32_MIN % -1 is undefined
# behaviour, and on x86 the native build dies of SIGFPE.  WebAssembly defines
# i32.rem_s(INT32_MIN, -1) = 0, so only the wasm VM can run it (see
# test_int_min_remainder_minus_one_does_not_crash).
INT_MIN_REM_MINUS_ONE = (-2147483648, -1)


def canon(value: Any) -> Any:
    """A comparable form of a result: exact for floats (sign of zero, NaN), strict about types."""
    if isinstance(value, GuestRef):
        value = value.to_python()
    if isinstance(value, float):
        return ("float", "nan" if math.isnan(value) else value.hex())
    if isinstance(value, list | tuple):
        return [canon(v) for v in value]
    if isinstance(value, dict):
        return {k: canon(v) for k, v in value.items()}
    return (type(value).__name__, value)


def outcome(fn: Callable[[], Any]) -> Any:
    """Canonical result of a call, or of the error it raised."""
    try:
        return canon(fn())
    except GasExhausted:
        return ("gas exhausted",)
    except MicroviumError as exc:
        return ("error", type(exc).__name__, exc.code, canon(getattr(exc, "value", None)))


class Echo:
    """A host import that records its (canonical) arguments and returns a string of them."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def __call__(self, *args: Any) -> str:
        self.seen.append(canon(list(args)))
        return ";".join(repr(canon(a)) for a in args)


class Wasm:
    def __init__(self, snapshot: bytes, echo: Echo) -> None:
        self.vm = mvactors.VM.restore(snapshot, {1: echo})

    def call(self, export_id: int, *args: Any) -> Any:
        return outcome(lambda: self.vm.exports[export_id](*args))

    def snapshot(self) -> bytes:
        return self.vm.create_snapshot()

    def set_gas(self, n: int) -> None:
        self.vm.stop_after_n_instructions(n)

    def gas(self) -> int:
        return self.vm.get_remaining_instructions()

    def close(self) -> None:
        self.vm.close()


class Native:
    def __init__(self, snapshot: bytes, echo: Echo) -> None:
        self.vm = NativeVM.restore(snapshot, {1: echo})

    def call(self, export_id: int, *args: Any) -> Any:
        return outcome(lambda: self.vm.call(export_id, *args))

    def snapshot(self) -> bytes:
        return self.vm.create_snapshot()

    def set_gas(self, n: int) -> None:
        self.vm.set_gas(n)

    def gas(self) -> int:
        return self.vm.gas_remaining()

    def close(self) -> None:
        self.vm.close()


Side = Wasm | Native
SIDES: dict[str, type[Wasm] | type[Native]] = {"wasm": Wasm, "native": Native}


def closures_plan() -> list[Call]:
    plan: list[Call] = [(1, 5), (1, -3), (2, 3, 4), (3, 5), (1, 2.5), (4,), (2, 0.1, 0.2), (3, 1)]
    # The counter overflows int32 into a float and keeps counting.
    plan += [(1, 2147483600), (1, 100), (1, -2147483700), (1, -0.5), (4,), (3, 12), (4,)]
    return plan


def objects_plan() -> list[Call]:
    plan: list[Call] = [(1, "a", 1), (1, "b", 2.5), (1, "a", "x"), (2,), (3, 3, 4), (3, 0.5, -1e10)]
    plan += [(4, 1), (4, 10), (4, -3.5), (5, 4), (2,), (1, "c", None), (2,), (4, 0)]
    return plan


def garbage_plan() -> list[Call]:
    # Many GCs over arrays and strings, then over objects, while `registry` and
    # the Boxes hold properties added after creation (extension lists the GC merges).
    plan: list[Call] = [(7, 300), (5, 6), (7, 1000), (7, 17), (7, 1000), (5, 3), (7, 999), (7, 2000)]
    plan += [(1, "k", 1), (4, 2), (6, 300), (1, "m", 2), (2,), (6, 1000), (4, 3), (6, 999), (2,), (4, 1)]
    return plan


def objects_with_gc_plan() -> list[Call]:
    return [*objects_plan(), (6, 300), (2,), (6, 1000), (4, 7), (2,), (6, 1000), (6, 999)]


def numbers_plan() -> list[Call]:
    plan: list[Call] = [(3,), (4,)]
    for a in NUMBERS:
        plan += [(5, a), (6, a), (7, a)]
        for b in NUMBERS:
            if (a, b) != INT_MIN_REM_MINUS_ONE:
                plan += [(1, a, b), (2, a, b)]
    plan += [(8, 7, 2), (8, 1.5, -0.0), (8, 2147483647, 3), (8, 0.1, 3)]
    return plan


PLANS: dict[str, Callable[[], list[Call]]] = {
    "closures": closures_plan,
    "objects": objects_plan,
    "garbage": garbage_plan,
    "numbers": numbers_plan,
}
SCRIPTS = {"closures": "closures", "objects": "objects", "garbage": "objects", "numbers": "numbers"}


@pytest.fixture(scope="module")
def snapshots() -> dict[str, bytes]:
    return {name: mvactors.compile(str(GUEST / f"fidelity_{script}.js")) for name, script in SCRIPTS.items()}


def run(
    side: type[Wasm] | type[Native], snapshot: bytes, plan: list[Call], end_snapshot: bool = False
) -> tuple[list[Any], list[Any], bytes]:
    """Results of ``plan`` from a fresh VM, the host import's log, and (if asked) the final snapshot.

    Snapshots are not compared byte for byte between builds: string padding
    bytes are uninitialised heap memory, and the host's own reads (e.g.
    ``to_python`` looking up properties by name) leave garbage in the heap.
    """
    echo = Echo()
    vm: Side = side(snapshot, echo)
    try:
        results = [vm.call(*call) for call in plan]
        return results, echo.seen, vm.snapshot() if end_snapshot else b""
    finally:
        vm.close()


@pytest.fixture(autouse=True)
def no_native_left_open() -> Iterator[None]:
    # The native engine holds one VM per process: a test that leaks one would
    # make every later test fail for the wrong reason.
    yield
    live = NativeVM._live
    if live is not None:
        live.close()
        pytest.fail("a NativeVM was left open")


@pytest.mark.parametrize("name", PLANS)
def test_same_results_call_by_call(snapshots: dict[str, bytes], name: str) -> None:
    plan = PLANS[name]()
    wasm_results, wasm_seen, _ = run(Wasm, snapshots[name], plan)
    native_results, native_seen, _ = run(Native, snapshots[name], plan)
    for call, w, n in zip(plan, wasm_results, native_results, strict=True):
        assert w == n, f"export {call[0]} with args {call[1:]!r}: wasm {w!r} != native {n!r}"
    assert wasm_seen == native_seen


@pytest.mark.parametrize("name", PLANS)
@pytest.mark.parametrize(("first", "second"), [("wasm", "native"), ("native", "wasm")])
def test_snapshot_crosses_over(snapshots: dict[str, bytes], name: str, first: str, second: str) -> None:
    plan = PLANS[name]()
    half = len(plan) // 2
    expected, expected_seen, _ = run(Wasm, snapshots[name], plan)
    head, head_seen, state = run(SIDES[first], snapshots[name], plan[:half], end_snapshot=True)
    tail, tail_seen, _ = run(SIDES[second], state, plan[half:])
    assert head + tail == expected
    assert head_seen + tail_seen == expected_seen


def test_instruction_counts_match(snapshots: dict[str, bytes]) -> None:
    counts: dict[str, list[Any]] = {}
    for label, side in SIDES.items():
        vm: Side = side(snapshots["closures"], Echo())
        try:
            observed: list[Any] = []
            vm.set_gas(1_000_000)
            for call in closures_plan():
                observed.append(vm.call(*call))
                observed.append(vm.gas())
            # A small budget runs out at the same instruction in both builds.
            vm.set_gas(40)
            observed.extend(vm.call(3, 50) for _ in range(3))
            counts[label] = observed
        finally:
            vm.close()
    assert counts["wasm"] == counts["native"]
    assert ("gas exhausted",) in counts["wasm"]


def test_native_vm_is_one_per_process(snapshots: dict[str, bytes]) -> None:
    with NativeVM.restore(snapshots["closures"]), pytest.raises(RuntimeError, match="one VM per process"):
        NativeVM.restore(snapshots["closures"])
    with NativeVM.restore(snapshots["closures"]) as vm:
        assert vm.call(1, 1) == 11


def test_int_min_remainder_minus_one_does_not_crash(snapshots: dict[str, bytes]) -> None:
    # Native-only crash (see INT_MIN_REM_MINUS_ONE); the wasm VM returns 0
    # where JavaScript says -0, like every other negative int32 remainder of 0.
    with mvactors.VM.restore(snapshots["numbers"], {1: Echo()}) as vm:
        assert vm.exports[1](*INT_MIN_REM_MINUS_ONE).to_python()[4] == 0
        assert vm.exports[1](-4, 2).to_python()[4] == 0


def test_snapshot_of_a_full_heap(snapshots: dict[str, bytes]) -> None:
    with mvactors.VM.restore(snapshots["numbers"], {1: Echo()}) as vm:
        failures = []
        for call in numbers_plan()[:400]:
            export_id, *args = call
            vm.exports[export_id](*args)
            try:
                vm.create_snapshot()
            except MicroviumError as exc:
                failures.append((call, exc.code))
        assert not failures, f"{len(failures)} of 400 snapshots failed, first after {failures[0][0]}"


_GC_OVERFLOW_SCRIPT = """
import sys
sys.path[:0] = [{here!r}, {tests!r}]
import mvactors
from test_native_fidelity import GUEST, Echo, {side}, objects_with_gc_plan
vm = {side}(mvactors.compile(str(GUEST / "fidelity_objects.js")), Echo())
for call in objects_with_gc_plan():
    vm.call(*call)
    try:
        vm.snapshot()
    except mvactors.MicroviumError:
        pass
print("done")
"""


@pytest.mark.parametrize("side", ["Native", "Wasm"])
def test_gc_compacting_extended_object(side: str) -> None:
    # In a subprocess with a timeout: the failure is an abort or a hang inside the engine.
    here = Path(__file__).resolve().parent
    script = _GC_OVERFLOW_SCRIPT.format(here=str(here), tests=str(here.parent), side=side)
    try:
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail("the engine hung in the GC (no return within 10 s)")
    assert proc.returncode == 0 and "done" in proc.stdout, proc.stderr[-2000:]


def test_both_drivers_report_failed_calls_alike() -> None:
    # The native driver raises through the VM's own error mapping.
    snapshot = compile_source("const f = vmImport(1); vmExport(1, (x) => f(x)); vmExport(2, (x) => { throw x; });")

    def refuse(x: int) -> None:
        raise ValueError(f"no {x}")

    reports = []
    with mvactors.VM.restore(snapshot, {1: refuse}) as vm, NativeVM.restore(snapshot, {1: refuse}) as native:
        for call in (lambda e, *a: vm.exports[e](*a), native.call):
            with pytest.raises(HostFunctionError) as host:
                call(1, 7)
            with pytest.raises(GuestError) as thrown:
                call(2, "x")
            reports.append((host.value.import_id, host.value.code, type(host.value.__cause__), str(host.value),
                            thrown.value.value))
    assert reports[0] == reports[1] == (1, "MVM_E_HOST_ERROR", ValueError, "host function 1 raised ValueError: no 7",
                                        "x")

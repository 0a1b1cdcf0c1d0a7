"""Fuzz cases shared by tests/fuzz (hypothesis, a bounded number of examples) and bench/fuzz.py.

A case does what a hostile user could: restore a mutated snapshot, pass a
random value in and out, or run guest code that abuses the engine.  Its
outcome is one of

* ``ok``: it worked, and every value that came back was exactly right;
* ``clean``: it failed with a MicroviumError or a documented standard error;
* ``unclean``: any other exception escaped (an internal error type);
* ``wrong``: a value came back wrong, or a bystander VM computed a wrong result.

Hangs and crashes are what bench/fuzz.py sees from outside (a case runs in a
child process there); in-process (tests/fuzz) the hard stop bounds hangs.
"""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio

import mvactors
from mvactors import MicroviumError, null

CLEAN_ERRORS: tuple[type[BaseException], ...] = (MicroviumError, TypeError, ValueError, OverflowError, KeyError,
                                                 IndexError)
"""What the public API documents it raises; anything else is an unclean error."""

TIME_LIMIT = 1.0  # seconds per engine entry in fuzz cases: a hang costs at most this
CASE_TIMEOUT = 20.0  # bench/fuzz.py: a child that has used this much CPU without a result is a hang
CASE_WALL_LIMIT = 300.0  # ... and one still running after this long (a starved child is not a hang)

# A guest that exercises most of the engine: strings, objects, arrays, closures,
# classes, Uint8Arrays, host calls and re-entry.
BASE_JS = """
const host = vmImport(1);
let store = undefined;
let count = 0;
const names = ['alpha', 'beta', 'gamma'];
const table = { a: 1, b: 'two', c: [3, 4, { d: 5 }], e: Microvium.newUint8Array(3) };
class Point { constructor(x, y) { this.x = x; this.y = y; } sum() { return this.x + this.y; } }
function echo(v) { return v; }
function keep(v) { store = v; return 0; }
function load() { return store; }
function viaHost(v) { return host(v); }
function work(n) {
  let s = 0;
  for (let i = 0; i < n; i++) { const o = { v: i, s: names[i % 3] + i }; s = (s + o.v) & 4095; }
  count = count + 1;
  return [s, count, table.c[2].d, new Point(n, 2).sum()];
}
function strings(n) { let s = ''; for (let i = 0; i < n; i++) { s = s + names[i % 3]; } return s; }
function make(n) {
  const a = [];
  for (let i = 0; i < n; i++) a.push({ k: 'k' + i, b: Microvium.newUint8Array(i % 4) });
  store = a;
  return a.length;
}
function down(n) { return n <= 0 ? host('bottom') : host(n); }
vmExport(1, echo);
vmExport(2, keep);
vmExport(3, load);
vmExport(4, viaHost);
vmExport(5, work);
vmExport(6, strings);
vmExport(7, make);
vmExport(8, down);
vmExport(9, () => table);
"""

ABUSE_JS = """
const host = vmImport(1);
let junk = [];
let o = {};
vmExport(1, () => { let i = 0; while (true) { i++; } });
vmExport(2, (n) => { function r(k) { return k <= 0 ? 0 : 1 + r(k - 1); } return r(n); });
vmExport(3, (n) => { for (let i = 0; i < n; i++) junk.push({ i: i, s: 'x' + i }); return junk.length; });
vmExport(4, (n) => { for (let i = 0; i < n; i++) o['p' + i] = i; return n; });
vmExport(5, (n) => host(n));
vmExport(6, (n) => { junk = []; o = {}; return 0; });
vmExport(7, (n) => { let s = 0; for (let i = 0; i < n; i++) s = (s + host(i)) & 4095; return s; });
"""

ACTOR_JS = """
const fetch = vmImport(2);
let count = 0;
vmExport(1, (n) => { count = count + n; return count; });
vmExport(2, (n) => { if (n % 3 === 0) { throw 'bad ' + n; } count = count + 1; return count; });
vmExport(3, async (n) => { const v = await fetch(n); count = count + v; return count; });
vmExport(4, () => count);
"""

# Heaps near the limits (issue 13): big objects, long arrays, long strings, Uint8Arrays and closure
# chains, built up to the 29,696 B heap limit, then collected and snapshotted.
HEAP_JS = """
let roots = [];
function build(kind, n, seed) {
  if (kind === 0) { const o = {}; for (let i = 0; i < n; i++) o['k' + seed + '_' + i] = i; return o; }
  if (kind === 1) { const a = []; for (let i = 0; i < n; i++) a.push(i + seed); return a; }
  if (kind === 2) { let s = ''; for (let i = 0; i < n; i++) s = s + 'y'; return s; }
  if (kind === 3) {
    const u = Microvium.newUint8Array(n);
    for (let i = 0; i < n; i++) u[i] = (i + seed) & 255;
    return u;
  }
  let f = () => seed;
  for (let i = 0; i < n; i++) { const g = f; const own = i; f = () => g() + own; }
  return f;
}
vmExport(1, (kind, n, seed) => {
  if (kind !== 5) roots.push(build(kind, n, seed));
  else if (roots.length > 0) roots.length = roots.length - 1;
  return roots.length;
});
vmExport(2, () => roots.length);
vmExport(3, (i) => roots[i]);
vmExport(4, (i) => roots[i]());
vmExport(5, (i, n, seed) => {
  const o = roots[i];
  for (let j = 0; j < n; j++) { if (o['k' + seed + '_' + j] !== j) return j; }
  return -1;
});
"""

BYSTANDER_JS = "let n = 0; vmExport(1, (x) => { n = n + 1; return [x * 2, 'v' + x, n]; });"

_snapshots: dict[str, bytes] = {}


def snapshot(name: str) -> bytes:
    """The compiled snapshot of one of this module's guests (compiled once per process)."""
    if name not in _snapshots:
        _snapshots[name] = mvactors.compile({"base": BASE_JS, "abuse": ABUSE_JS, "actor": ACTOR_JS,
                                                       "bystander": BYSTANDER_JS, "heap": HEAP_JS}[name])
    return _snapshots[name]


# ---- bystanders: after any failure, other VMs still compute correct results ----

_bystander: mvactors.VM | None = None
_bystander_calls = 0


def bystanders_ok() -> bool:
    """A VM restored before the case and a freshly restored one both compute correctly."""
    global _bystander, _bystander_calls
    if _bystander is None:
        _bystander = mvactors.VM.restore(snapshot("bystander"))
        _bystander_calls = 0
    try:
        _bystander_calls += 1
        if _bystander.exports[1](21).to_python() != [42, "v21", _bystander_calls]:
            return False
        with mvactors.VM.restore(snapshot("bystander")) as fresh:
            return bool(fresh.exports[1](5).to_python() == [10, "v5", 1])
    except Exception:
        return False


# ---- exact equality and the value model ----


def same(a: Any, b: Any) -> bool:
    """Exact equality: types, -0.0 and NaN included."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


class Unsupported(Exception):
    """The value model says the VM must refuse this value (with a clean error)."""


def expected(value: Any, depth: int = 0) -> Any:
    """What ``value`` must read as after a round trip through the guest, or raise Unsupported."""
    if value is None or value is null or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if abs(value) > 2**53:
            raise Unsupported("int out of range")
        return value
    if isinstance(value, float):
        if value.is_integer() and abs(value) <= 2**53 and not (value == 0 and math.copysign(1, value) < 0):
            return int(value)
        return value
    if isinstance(value, str):
        try:
            encoded = value.encode("utf-8", "surrogatepass")
        except UnicodeEncodeError as exc:
            raise Unsupported("unencodable") from exc
        if len(encoded) > 0xFFE:
            raise Unsupported("string too long")
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        if len(value) > 0xFFF:
            raise Unsupported("bytes too long")
        return bytes(value)
    if isinstance(value, (list, tuple, dict)) and depth >= 64:
        raise Unsupported("nested deeper than 64 containers")
    if isinstance(value, (list, tuple)):
        if len(value) > 0xFFF // 2:
            raise Unsupported("list too long")
        return [expected(v, depth + 1) for v in value]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str) or k == "__proto__" or (k.isascii() and k.isdigit()):
                raise Unsupported("key")
            out[k] = expected(v, depth + 1)
        return out
    raise Unsupported(type(value).__name__)


def random_value(rng: random.Random, depth: int = 0) -> Any:
    """A random nested value of every supported and unsupported type."""
    kind = rng.randrange(16 if depth < 6 else 11)
    if kind == 0:
        return rng.choice([None, null, True, False])
    if kind == 1:
        return rng.choice([0, 1, -1, 8191, 8192, -8192, -8193, 2**31 - 1, -(2**31), 2**53, -(2**53), 2**53 + 1,
                           rng.randrange(-(2**60), 2**60)])
    if kind == 2:
        return rng.choice([0.0, -0.0, math.nan, math.inf, -math.inf, 0.1, 1e300, 5e-324, 2.0**53, 1.5,
                           rng.uniform(-1e6, 1e6)])
    if kind == 3:
        alphabet = "abcXYZ019 _-\x00\u00e9\u4e2d\U0001f600\ud800"
        return "".join(rng.choice(alphabet) for _ in range(rng.choice([0, 1, 3, 10, 100, 2000, 5000])))
    if kind == 4:
        return bytes(rng.randrange(256) for _ in range(rng.choice([0, 0, 1, 2, 5, 100, 4095, 4096])))
    if kind in (5, 6, 7, 8, 9, 10):
        return rng.randrange(-9000, 9000)
    if kind in (11, 12):
        n = rng.choice([0, 1, 2, 5, 20, 200, 3000])
        items = [random_value(rng, depth + 1) for _ in range(min(n, 40))]
        items += [rng.randrange(100)] * (n - len(items))
        return items if rng.random() < 0.8 else tuple(items)
    if kind == 13:
        n = rng.choice([0, 1, 3, 10, 100, 3000])
        keys = [rng.choice(["a", "b", "length", "__proto__", "1", "k", "\u00e9", ""]) + str(i) if rng.random() < 0.9
                else rng.choice(["__proto__", "12", "length", 7]) for i in range(n)]
        return {k: random_value(rng, depth + 1) if i < 20 else i for i, k in enumerate(keys)}
    if kind == 14:
        deep: Any = rng.randrange(10)
        for _ in range(rng.choice([10, 63, 64, 65, 400, 2000])):
            deep = [deep] if rng.random() < 0.5 else {"x": deep}
        return deep
    return rng.choice([object(), {1, 2}, 1 + 2j, lambda: 0, bytearray(b"ab"), memoryview(b"cd")])


# ---- cases ----


@dataclass
class Outcome:
    kind: str  # ok | clean | unclean | wrong
    detail: str = ""


def _classify(run: Callable[[], str | None]) -> Outcome:
    try:
        problem = run()
    except CLEAN_ERRORS as exc:
        outcome = Outcome("clean", f"{type(exc).__name__}: {str(exc)[:400]}")
    except Exception as exc:
        outcome = Outcome("unclean", f"{type(exc).__name__}: {str(exc)[:160]}")
    else:
        outcome = Outcome("wrong", problem) if problem else Outcome("ok")
    if outcome.kind != "wrong" and not bystanders_ok():
        return Outcome("wrong", f"a bystander VM computed a wrong result after: {outcome.kind} {outcome.detail}")
    return outcome


def value_case(value: Any) -> Outcome:
    """Pass ``value`` in (argument, stored global, host result) and back out; compare exactly."""

    def run() -> str | None:
        try:
            want = expected(value)
        except Unsupported:
            want = Unsupported
        with mvactors.VM.restore(snapshot("base"), {1: lambda v: value}, time_limit=TIME_LIMIT) as vm:
            try:
                results = []
                for export in (1, 4):  # echo(v) and host() -> v
                    got = vm.exports[export](value if export == 1 else 0)
                    results.append(got.to_python() if isinstance(got, mvactors.GuestRef) else got)
                vm.exports[2](value)
                vm.run_gc(squeeze=True)
                got = vm.exports[3]()
                results.append(got.to_python() if isinstance(got, mvactors.GuestRef) else got)
                again = mvactors.VM.restore(vm.create_snapshot(), {1: lambda v: v}, time_limit=TIME_LIMIT)
                with again:
                    got = again.exports[3]()
                    results.append(got.to_python() if isinstance(got, mvactors.GuestRef) else got)
            except CLEAN_ERRORS:
                if want is Unsupported:
                    return None
                raise
            if want is Unsupported:
                return f"an unsupported value was accepted: {value!r:.100}"
            for got in results:
                if not same(got, want):
                    return f"{value!r:.80} came back as {got!r:.80}"
            vm.exports[5](10)  # the VM still works
        return None

    return _classify(run)


MUTATIONS = ("truncate", "flip", "overwrite", "splice")


def crc16(data: bytes) -> int:
    """CRC16-CCITT (init 0xFFFF), the snapshot checksum."""
    crc = 0xFFFF
    for byte in data:
        x = (crc >> 8) ^ byte
        x ^= x >> 4
        crc = ((crc << 8) ^ (x << 12) ^ (x << 5) ^ x) & 0xFFFF
    return crc


def with_header_fixed(data: bytes) -> bytes:
    """``data`` with its size and CRC fields recomputed, so the engine's checks past the CRC run."""
    out = bytearray(data)
    if len(out) >= 8:
        out[4:6] = struct.pack("<H", len(out) & 0xFFFF)
        out[6:8] = struct.pack("<H", crc16(bytes(out[8:])))
    return bytes(out)


def mutate(rng: random.Random, data: bytes, how: str, fix: bool) -> bytes:
    out = bytearray(data)
    if how == "truncate":
        out = out[:rng.randrange(len(out))]
    elif how == "flip":
        for _ in range(rng.choice([1, 1, 2, 4])):
            i = rng.randrange(len(out))
            out[i] ^= 1 << rng.randrange(8)
    elif how == "overwrite":
        for _ in range(rng.choice([1, 2, 4])):
            i = rng.randrange(len(out))
            out[i] = rng.choice([0, 0xFF, 0x01, 0x80, rng.randrange(256)])
    else:  # splice: a chunk copied from elsewhere in the snapshot
        n = rng.randrange(1, 32)
        src, dst = rng.randrange(len(out)), rng.randrange(len(out))
        out[dst:dst + n] = out[src:src + n]
    return with_header_fixed(bytes(out)) if fix else bytes(out)


def snapshot_case(data: bytes) -> Outcome:
    """Restore a (mutated) snapshot and use everything it offers; only clean errors are allowed."""

    def run() -> str | None:
        calls = 0

        def host(v: Any) -> Any:
            nonlocal calls
            calls += 1
            return v if calls < 50 else None

        vm = mvactors.VM.restore(data, {1: host}, time_limit=TIME_LIMIT)
        with vm:
            vm.stop_after_n_instructions(200_000)
            for export in sorted(vm.exports)[:12]:
                for arg in (3, "s", [1, {"a": b""}]):
                    try:
                        got = vm.exports[export]
                        result = got(arg) if callable(got) else got
                        if isinstance(result, mvactors.GuestRef):
                            result.to_python()
                    except CLEAN_ERRORS:
                        if vm.closed:
                            return None
            vm.run_gc(squeeze=True)
            vm.get_memory_stats()
            mvactors.VM.restore(vm.create_snapshot(), {1: host}, time_limit=TIME_LIMIT).close()
        return None

    return _classify(run)


ABUSES = ("loop", "gas_loop", "recursion", "oom", "names", "reentry", "close_inside", "raising_host",
          "savepoint", "hibernate", "huge_dict")


def abuse_case(rng: random.Random, kind: str) -> Outcome:
    """Guest code or host behaviour that abuses the engine; the expected error type is checked."""

    def run() -> str | None:
        box: dict[str, Any] = {}

        def host(n: Any) -> Any:
            action = box.get("action")
            if action == "raise":
                raise RuntimeError("host failure")
            if action == "reenter" and isinstance(n, int) and n > 0:
                return box["vm"].exports[5](n - 1)
            if action == "close":
                box["vm"].close()
                with mvactors.VM.restore(snapshot("abuse"), {1: lambda n: n}) as other:
                    box["other"] = other.exports[3](5)
            return n

        vm = mvactors.VM.restore(snapshot("abuse"), {1: host}, time_limit=rng.choice([0.05, 0.2, TIME_LIMIT]))
        box["vm"] = vm
        with vm:
            if kind == "loop":
                return _expect(lambda: vm.exports[1](), mvactors.TimeLimitExceeded)
            if kind == "gas_loop":
                vm.stop_after_n_instructions(rng.randrange(1, 100_000))
                problem = _expect(lambda: vm.exports[1](), mvactors.GasExhausted)
                vm.stop_after_n_instructions(-1)
                return problem or _check(vm.exports[6](0), 0)
            if kind == "recursion":
                n = rng.choice([10, 50, 200, 5000])
                try:
                    return _check(vm.exports[2](n), n)
                except MicroviumError:
                    return _check(vm.exports[6](0), 0)
            if kind == "oom":
                return _expect(lambda: vm.exports[3](rng.choice([2000, 5000, 20000])), mvactors.VMUnusable)
            if kind == "names":
                try:
                    vm.exports[4](rng.choice([100, 1000, 4000]))
                except MicroviumError:
                    pass
                return None
            if kind == "reentry":
                box["action"] = "reenter"
                depth = rng.choice([1, 5, 20, 60])
                try:
                    return _check(vm.exports[5](depth), 0)
                except MicroviumError:
                    return None
            if kind == "close_inside":
                box["action"] = "close"
                problem = _expect(lambda: vm.exports[5](1), mvactors.VMUnusable)
                return problem or _check(box.get("other"), 5)
            if kind == "raising_host":
                box["action"] = "raise"
                problem = _expect(lambda: vm.exports[7](5), mvactors.HostFunctionError)
                box["action"] = None
                return problem or _check(vm.exports[7](4), 6)
            if kind == "savepoint":
                vm.exports[3](10)
                point = vm.savepoint()
                try:
                    vm.exports[3](rng.choice([10, 20000]))
                except MicroviumError:
                    pass
                vm.rollback(point)
                return _check(vm.exports[3](0), 10)
            if kind == "hibernate":
                vm.exports[3](rng.randrange(1, 200))
                before = vm.exports[3](0)
                record = vm.hibernate()
                woken, _refs = mvactors.VM.wake(record, {1: host})
                with woken:
                    return _check(woken.exports[3](0), before)
            if kind == "huge_dict":
                value = {f"key{i}": i for i in range(rng.choice([500, 1500, 3000, 6000]))}
                try:
                    return _check(vm.exports[5](value), value)
                except MicroviumError:
                    if vm.closed:
                        return "the VM died instead of refusing an argument too large for it"
                    return _check(vm.exports[6](0), 0)  # refused, and the VM still works
        return None

    return _classify(run)


# Sizes cluster at the engine's limits: one allocation (1,022 properties, 2,047 array elements,
# 4,094 string bytes, 4,095 Uint8Array bytes) and just past it (a guest RangeError).
_HEAP_SIZES = {0: (50, 300, 700, 1022, 1023, 1100), 1: (100, 1024, 1025, 2047, 2048), 2: (100, 1000, 4094, 4095),
               3: (0, 1, 255, 4095, 4096), 4: (0, 5, 11, 30)}


def heap_case(rng: random.Random) -> Outcome:
    """Build a random heap up to the limit, then collect, squeeze, snapshot and restore it: the
    contents must stay equal; the only deaths allowed are a full heap's, saying so."""
    plan = [(kind, rng.choice(_HEAP_SIZES[kind]) if kind != 5 else 0, rng.randrange(0, 100))
            for kind in rng.choices(range(6), weights=[3, 3, 2, 2, 2, 1], k=rng.randrange(3, 14))]

    def contents(vm: mvactors.VM, kept: list[tuple[int, int, int]]) -> list[Any]:
        out: list[Any] = []
        for i, (kind, n, seed) in enumerate(kept):
            if kind == 0:
                out.append(vm.exports[5](i, n, seed))
            elif kind == 4:
                out.append(vm.exports[4](i))
            else:
                value = vm.exports[3](i)
                out.append(value.to_python() if isinstance(value, mvactors.GuestRef) else value)
        return out

    def run() -> str | None:
        vm = mvactors.VM.restore(snapshot("heap"), time_limit=TIME_LIMIT * 5)
        kept: list[tuple[int, int, int]] = []
        try:
            for kind, n, seed in plan:
                try:
                    vm.exports[1](kind, n, seed)
                except mvactors.GuestError as exc:
                    if not str(exc.value).startswith("RangeError: "):
                        return f"unexpected guest error {exc.value!r:.80}"
                    continue
                if kind == 5:
                    kept = kept[:-1]
                else:
                    kept.append((kind, n, seed))
            before = contents(vm, kept)
            if any(isinstance(x, int) and x != -1 for x, (kind, _, _) in zip(before, kept, strict=True) if kind == 0):
                return "an object lost a property"
            steps: list[tuple[str, Callable[[], Any]]] = [
                ("run_gc", vm.run_gc), ("squeeze", lambda: vm.run_gc(squeeze=True))]
            for name, step in steps:
                step()
                if contents(vm, kept) != before:
                    return f"{name} changed the heap"
            for collect in (False, None):
                with mvactors.VM.restore(vm.create_snapshot(collect=collect)) as again:
                    if contents(again, kept) != before:
                        return f"create_snapshot(collect={collect}) + restore changed the heap"
            return None
        except mvactors.VMUnusable as exc:
            if "ran out of memory" in str(exc):
                raise  # a full heap, said truthfully: clean
            raise RuntimeError(f"the VM died of something other than a full heap: {exc}") from None
        finally:
            vm.close()

    return _classify(run)


def _check(got: Any, want: Any) -> str | None:
    if isinstance(got, mvactors.GuestRef):
        got = got.to_python()
    return None if same(got, want) else f"expected {want!r:.60}, got {got!r:.60}"


def _expect(action: Callable[[], Any], error: type[BaseException]) -> str | None:
    try:
        action()
    except error:
        return None
    return f"expected {error.__name__}"


def actor_case(rng: random.Random, steps: int = 30) -> Outcome:
    """Random traffic to an actor: plain turns, failing turns, async host calls that fail, hibernation."""
    plan = [(rng.choice(["add", "maybe", "fetch", "hibernate"]), rng.randrange(-50, 50), rng.random() < 0.3)
            for _ in range(steps)]

    async def traffic() -> str | None:
        async def fetch(n: int) -> int:
            await anyio.sleep(0)
            if n % 5 == 0:
                raise RuntimeError(f"fetch {n} failed")
            return 2 * n

        model = 0
        async with mvactors.Runtime() as rt:
            actor = await rt.spawn(snapshot("actor"), {2: fetch})
            for op, n, _hibernate_after in plan:
                if op == "hibernate":
                    await actor.hibernate()
                    continue
                export = {"add": 1, "maybe": 2, "fetch": 3}[op]
                try:
                    got = await actor.call(export, n, timeout=10)
                except mvactors.GuestError:
                    if not ((op == "maybe" and n % 3 == 0) or (op == "fetch" and n % 5 == 0)):
                        return f"{op}({n}) failed unexpectedly"
                    continue
                model += {"add": n, "maybe": 1, "fetch": 2 * n}[op]
                if (op == "maybe" and n % 3 == 0) or (op == "fetch" and n % 5 == 0):
                    return f"{op}({n}) should have failed"
                if not same(got, model):
                    return f"{op}({n}) returned {got!r}, the model says {model}"
            final = await actor.call(4)
            if not same(final, model):
                return f"final count {final!r}, the model says {model}"
        return None

    return _classify(lambda: anyio.run(traffic))

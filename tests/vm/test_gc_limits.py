"""Issue 13's table and limits, on the WebAssembly VM and the native reference build.

Every heap here is one the guest is allowed to build.  Each must survive
``create_snapshot(collect=False)``, ``create_snapshot()``, ``run_gc()``, ``run_gc(squeeze=True)``
and a restore of either snapshot with equal contents; limits are guest RangeErrors (catchable in
the guest, ``GuestError`` at the host) after which the VM lives on.

The engine fixes (engine/build.py ENGINE_PATCHES) and the tests that fail without them:

1. the GC merged a property chain checking one word per child property but copying two:
   ``test_objects_of_every_size_survive`` (70, 100 keys: writes past the bucket);
2. the merge's bucket request omitted the 2-byte header, so past 63 properties every retry came
   up short until malloc failed: ``test_objects_of_every_size_survive`` (70 and up);
3. the request counted only the children walked so far: ``..._survive[300]`` and larger;
4. a merged list past 1,022 properties was fatal (MVM_E_ALLOCATION_TOO_LARGE):
   ``..._survive[1023]``, ``[1100]``;
5. an empty Uint8Array took 2 bytes and the GC's 4-byte tombstone clobbered the next header:
   ``test_an_empty_uint8array_next_to_other_values``;
6. an array died at its 1,025th element (capacity 1,024 -> 2,048): ``test_arrays_up_to_2047``
   and ``test_the_2048th_element_is_a_range_error``;
7. ``a.length = 1.5`` was fatal: ``test_array_length_must_be_a_small_integer``;
8. a string of more than 4,094 bytes was fatal: ``test_strings_up_to_4094_bytes``;
9. ``Microvium.newUint8Array(n)`` outside 0..4,095 returned the number n: ``test_uint8array_lengths``.

Later fixes: a promise's 1,025th pending await was fatal (``test_pending_awaits_of_one_promise``);
memory statistics underflowed (``test_memory_statistics_are_sane``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest
from conftest import compile_source

import mvactors
from mvactors.errors import GuestError
from mvactors.testing import NativeVM, native_available

GUEST = r"""
let keep;
vmExport(1, (n) => { const o = {}; for (let i = 0; i < n; i++) { o['p' + i] = i; } keep = o; return n; });
vmExport(2, (n) => {
  for (let i = 0; i < n; i++) { if (keep['p' + i] !== i) return -1 - i; }
  return keep['p' + n] === undefined ? n : -99999;
});
vmExport(3, (n) => { const a = []; for (let i = 0; i < n; i++) a.push(i * 3); keep = a; return a.length; });
vmExport(4, () => {
  for (let i = 0; i < keep.length; i++) { if (keep[i] !== i * 3) return -1 - i; }
  return keep.length;
});
vmExport(5, (x) => { try { keep.push(x); return 'pushed'; } catch (e) { return 'caught ' + e; } });
vmExport(6, (x) => { keep.push(x); return 'pushed'; });
vmExport(7, (x) => { const a = [1, 2, 3]; try { a.length = x; } catch (e) { return 'caught ' + e; } return a.length; });
vmExport(8, (n) => {
  try { let s = ''; for (let i = 0; i < n; i++) s = s + 'x'; keep = s; return 'ok'; }
  catch (e) { return 'caught ' + e; }
});
vmExport(9, () => keep);
vmExport(10, (n) => {
  try { const u = Microvium.newUint8Array(n); for (let i = 0; i < n; i++) u[i] = i & 255; keep = u; return 'ok'; }
  catch (e) { return 'caught ' + e; }
});
vmExport(11, () => {
  const u = Microvium.newUint8Array(0);
  const o = {}; o.after = 'empty' + 1; o.n = 7;
  keep = [u, o, Microvium.newUint8Array(0), 'x' + 2];
  return 0;
});
vmExport(12, () => keep[1].after + keep[1].n + keep[3] + keep[0].length + keep[2].length);
"""

ARRAY_ERROR = "RangeError: invalid array length (an array holds 0 to 2047 elements)"
STRING_ERROR = "RangeError: string too long (a string holds at most 4094 bytes)"
UINT8_ERROR = "RangeError: invalid Uint8Array length (0 to 4095 bytes)"

BUILDS = ["wasm", pytest.param("native", marks=pytest.mark.skipif(not native_available(),
                                                                  reason="the native reference engine is not built"))]


@pytest.fixture(scope="module")
def guest() -> bytes:
    return compile_source(GUEST)


class Build:
    """One build's VM behind call / gc / snapshot / restore."""

    def __init__(self, name: str, snapshot: bytes) -> None:
        self.name = name
        self.vm: Any = None
        self.restore(snapshot)

    def restore(self, snapshot: bytes) -> None:
        if self.vm is not None:
            self.vm.close()
        self.vm = NativeVM.restore(snapshot) if self.name == "native" else mvactors.VM.restore(snapshot)

    def call(self, export: int, *args: Any) -> Any:
        if self.name == "native":
            return self.vm.call(export, *args)
        return self.vm.exports[export](*args)

    def snapshots(self) -> list[bytes]:
        """The heap as it is, and (wasm) as create_snapshot() leaves it by default."""
        if self.name == "native":
            return [bytes(self.vm.create_snapshot())]
        return [bytes(self.vm.create_snapshot(collect=False)), bytes(self.vm.create_snapshot())]

    def close(self) -> None:
        self.vm.close()


@pytest.fixture(params=BUILDS)
def build(request: pytest.FixtureRequest, guest: bytes) -> Iterator[Build]:
    b = Build(request.param, guest)
    yield b
    b.close()


def survives(build: Build, check: Callable[[], Any]) -> None:
    """The state ``check()`` reads is the same after each snapshot, collection and restore."""
    expected = check()
    snapshots = build.snapshots()
    build.vm.run_gc()
    assert check() == expected
    build.vm.run_gc(squeeze=True)
    assert check() == expected
    snapshots += build.snapshots()
    for snapshot in snapshots:
        build.restore(snapshot)
        assert check() == expected
        build.vm.run_gc()
        assert check() == expected


@pytest.mark.parametrize("keys", [50, 70, 100, 300, 900, 1022, 1023, 1100])
def test_objects_of_every_size_survive(build: Build, keys: int) -> None:
    assert build.call(1, keys) == keys
    survives(build, lambda: build.call(2, keys))
    assert build.call(2, keys) == keys


@pytest.mark.parametrize("items", [1024, 1025, 2000, 2047])
def test_arrays_up_to_2047(build: Build, items: int) -> None:
    assert build.call(3, items) == items
    survives(build, lambda: build.call(4))
    assert build.call(4) == items


def test_the_2048th_element_is_a_range_error(build: Build) -> None:
    assert build.call(3, 2047) == 2047
    assert build.call(5, 1) == "caught " + ARRAY_ERROR  # the guest's catch sees it
    with pytest.raises(GuestError) as raised:  # uncaught, the host sees a GuestError
        build.call(6, 1)
    assert raised.value.value == ARRAY_ERROR
    assert build.call(4) == 2047  # the VM lives on, the array untouched
    survives(build, lambda: build.call(4))


@pytest.mark.parametrize("length", [1.5, -1, "3", 2048, 70000])
def test_array_length_must_be_a_small_integer(build: Build, length: Any) -> None:
    assert build.call(7, length) == "caught " + ARRAY_ERROR
    assert build.call(7, 2) == 2


def test_strings_up_to_4094_bytes(build: Build) -> None:
    assert build.call(8, 4094) == "ok"
    survives(build, lambda: build.call(9))
    assert build.call(9) == "x" * 4094
    assert build.call(8, 4095) == "caught " + STRING_ERROR
    assert build.call(9) == "x" * 4094


@pytest.mark.parametrize("size", [0, 1, 255, 4095])
def test_uint8array_lengths(build: Build, size: int) -> None:
    assert build.call(10, size) == "ok"
    survives(build, lambda: bytes(build.call(9)))
    assert bytes(build.call(9)) == bytes(i & 255 for i in range(size))


@pytest.mark.parametrize("size", [4096, -1, 70000])
def test_uint8array_length_errors(build: Build, size: int) -> None:
    assert build.call(10, size) == "caught " + UINT8_ERROR
    assert build.call(10, 3) == "ok"


def test_an_empty_uint8array_next_to_other_values(build: Build) -> None:
    assert build.call(11) == 0
    survives(build, lambda: build.call(12))
    assert build.call(12) == "empty17x200"


PROMISES = r"""
const hostWait = vmImport(10);
let refused = 0;
let last = '';
async function gate() { await hostWait(); }
async function waiter(p) { await p; }
async function catcher(p) { try { await p; } catch (e) { refused = refused + 1; last = e; } }
vmExport(1, (n) => { const p = gate(); for (let i = 0; i < n; i++) waiter(p); catcher(p); return n; });
vmExport(2, () => refused);
vmExport(3, () => last);
"""


@pytest.mark.parametrize("waiters", [1100, 2046, 2047])
def test_pending_awaits_of_one_promise(waiters: int) -> None:
    """Up to 2,047 awaits of one promise may be pending; the 2,048th throws at its await."""

    async def never() -> None:
        await anyio.Event().wait()

    async def main() -> tuple[Any, Any]:
        vm = mvactors.VM.restore(compile_source(PROMISES), {10: never})
        with anyio.CancelScope() as scope:
            async with vm:
                assert vm.exports[1](waiters) == waiters  # `waiters` waiters and one catcher
                result = vm.exports[2](), vm.exports[3]()
                scope.cancel()  # the host's await never ends: leave it
        return result

    refused, message = anyio.run(main)
    if waiters < 2047:
        assert (refused, message) == (0, "")
    else:
        assert (refused, message) == (1, "RangeError: too many pending awaits of one promise (at most 2047)")


def test_memory_statistics_are_sane(guest: bytes) -> None:
    vm = mvactors.VM.restore(guest)
    vm.exports[1](1000)
    stats = vm.get_memory_stats()
    assert stats.virtual_heap_used <= stats.virtual_heap_allocated_capacity < 0x7400
    assert stats.total_size < 65536
    # It read the import table's section (empty here: 0); the globals are 2 bytes each.
    assert stats.global_variables_size > 0 and stats.global_variables_size % 2 == 0

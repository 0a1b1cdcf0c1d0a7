"""Snapshots do not carry garbage across cycles (issue 7, finding 8)."""

from __future__ import annotations

import mvactors

CHURN_JS = """
let state = { count: 0, log: [] };
vmExport(1, (n) => {
  for (let i = 0; i < n; i++) {
    const tmp = { i: i, s: 'tmp' + i, a: [i, i] };
    state.count = (state.count + tmp.i) & 4095;
  }
  state.log = ['last' + n];
  return state.count;
});
vmExport(2, () => [state.count, state.log[0]]);
"""


def cycle(snapshot: bytes, collect: bool | None) -> bytes:
    with mvactors.VM.restore(snapshot) as vm:
        vm.exports[1](40)
        return vm.create_snapshot() if collect is None else vm.create_snapshot(collect=collect)


def test_snapshot_size_stays_flat_across_cycles(compile_js):
    first = snapshot = compile_js(CHURN_JS)
    sizes = []
    for _ in range(12):
        snapshot = cycle(snapshot, None)
        sizes.append(len(snapshot))
    assert max(sizes) <= len(first) + 200, sizes  # the state is a few objects; the garbage was 10-25 KB
    with mvactors.VM.restore(snapshot) as vm:
        assert vm.exports[2]().to_python() == [(12 * 780) & 4095, "last40"]


def test_collect_false_copies_the_heap_as_it_is(compile_js):
    snapshot = cycle(compile_js(CHURN_JS), False)
    collected = cycle(compile_js(CHURN_JS), True)
    assert len(snapshot) > len(collected) + 1000
    for data in (snapshot, collected):
        with mvactors.VM.restore(data) as vm:
            assert vm.exports[2]().to_python() == [780, "last40"]


def test_small_growth_is_not_collected(compile_js):
    with mvactors.VM.restore(compile_js(CHURN_JS)) as vm:
        vm.exports[1](1)
        kept = vm.create_snapshot()
        assert len(kept) == len(vm.create_snapshot(collect=False))  # below the threshold: no collection

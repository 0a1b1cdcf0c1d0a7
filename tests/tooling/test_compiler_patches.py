"""Fixes to the pinned Microvium compiler (engine/compiler-patches.cjs), in a checkout and in the bundle.

microvium@8.0.0 compiled a loop body that declares a variable a closure captures as a scope without
a link to its parent, yet read the enclosing function's captured variables through that link: the
engine then took the body's last variable as the parent scope and read garbage.  Found by
tests/vm/test_gc_property.py as a wasm/native disagreement ('cNaN' against 'c10').
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import compile_source, disassemble

import mvactors
from mvactors.testing import NativeVM, native_available

ROOT = Path(__file__).resolve().parents[2]

# `seed` is captured by a closure, so it lives in the function's closure scope; the loop body has
# closure slots of its own (g, own) and reads `seed` through them.
SCRIPT = r"""
function chain(depth, seed) {
  let f = () => [seed];
  const seen = [];
  for (let i = 0; i < depth; i++) {
    const g = f;
    const own = 'c' + (seed + i);
    seen.push(typeof seed);
    seen.push(seed);
    f = () => { const a = g(); a.push(own); return a; };
  }
  const got = f();
  for (let i = 0; i < got.length; i++) seen.push(got[i]);
  return seen;
}
vmExport(1, (depth, seed) => {
  const seen = chain(depth, seed);
  let out = '';
  for (let i = 0; i < seen.length; i++) out = out + seen[i] + ',';
  return out;
});
"""


def expected(depth: int, seed: int) -> str:
    seen: list[Any] = []
    for _ in range(depth):
        seen += ["number", seed]
    seen += [seed] + [f"c{seed + i}" for i in range(depth)]
    return "".join(f"{x}," for x in seen)


@pytest.mark.parametrize("depth", [1, 2, 11, 30])
def test_a_loop_body_reads_the_enclosing_functions_captured_variables(depth: int) -> None:
    snapshot = compile_source(SCRIPT)
    vm = mvactors.VM.restore(snapshot)
    assert vm.exports[1](depth, 7) == expected(depth, 7)
    if native_available():
        with NativeVM.restore(snapshot) as native:
            assert native.call(1, depth, 7) == expected(depth, 7)


def test_the_loop_body_scope_keeps_its_parent() -> None:
    # Upstream emitted ScopeNew(count 3) and LoadScoped [4] (a hop through a missing link).
    text = disassemble(SCRIPT)
    assert "ScopePush(4)" in text
    assert "ScopeNew(count 3)" not in text


ESBUILD = ROOT / "engine" / "node_modules" / ".bin" / "esbuild"


@pytest.mark.skipif(shutil.which("node") is None or not ESBUILD.exists(),
                    reason="bundling needs node and the pinned esbuild (./dev setup)")
def test_the_wheels_compiler_bundle_carries_the_fixes(tmp_path: Path) -> None:
    bundle = tmp_path / "microvium.cjs"
    subprocess.run(["node", str(ROOT / "engine" / "bundle-compiler.mjs"), str(bundle)], check=True, timeout=120)
    script = tmp_path / "script.mjs"
    script.write_text(SCRIPT, encoding="utf-8")
    out = tmp_path / "out.mvm-bc"
    subprocess.run(["node", str(bundle), str(script), "--snapshot", str(out)], cwd=tmp_path, check=True,
                   capture_output=True, timeout=120)
    assert out.read_bytes() == mvactors.compile(SCRIPT)

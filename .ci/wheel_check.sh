#!/usr/bin/env bash
# Build the sdist and the wheel from it, install the wheel in a fresh venv with no node or npm
# on PATH, and run the README's quick tour there: first without the [compiler] extra (compile
# must say which pip command fixes it), then with it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

.venv/bin/python -m build --outdir "$work/dist" . >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
# One abi3 wheel for every CPython >= 3.11: the optional C call path (mvactors/vm/_fastcall.c),
# compiled by the pinned zig against glibc 2.17 on Linux (setup.py), hence manylinux.
wheel=$(ls "$work"/dist/mvactors-*-cp311-abi3-*.whl)
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64|Linux-aarch64)
    case "$wheel" in *-manylinux_2_17_*.whl) ;; *) echo "not a manylinux wheel: $wheel" >&2; exit 1 ;; esac ;;
esac
echo "built $(basename "$wheel") ($(du -k "$wheel" | cut -f1) KB) from $(basename "$(ls "$work"/dist/*.tar.gz)")"
.venv/bin/python - "$wheel" <<'PY'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
meta = zipfile.ZipFile(sys.argv[1]).read(next(n for n in names if n.endswith("/METADATA"))).decode()
assert "mvactors/vm/_engine/mvx.wasm" in names, "wheel has no engine"
assert "mvactors/_compiler/microvium.cjs" in names, "wheel has no bundled compiler"
for shipped in ("static/htmx.min.js", "static/htmx.LICENSE.txt", "static/dashboard.css", "templates/actor.html"):
    assert f"mvactors/dashboard/{shipped}" in names, f"wheel has no dashboard {shipped}"
assert "Provides-Extra: dashboard" in meta, meta
native = [n for n in names if n.endswith((".so", ".dylib", ".dll", ".pyd"))]
assert native == ["mvactors/vm/_fastcall.abi3.so"], f"the wheel's native code should be the C call path only: {native}"
assert "License-Expression: MIT" in meta and "Requires-Dist: sniffio" in meta, meta
print("wheel contents and metadata ok:", len(names), "files")
PY

python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet "$wheel" 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true
cd "$work"
# Only the venv on PATH for everything mvactors runs: no node, no npm, no microvium.
bare() { env PATH="$work/venv/bin" "$@"; }
bare python -c 'import shutil, sys; sys.exit("node is on PATH" if shutil.which("node") or shutil.which("npm") else 0)'
if bare python "$root/.ci/readme_tour.py" "$root/README.md" >"$work/out" 2>&1; then
  echo "the quick tour compiled without node and without the [compiler] extra"; exit 1
fi
grep -F 'pip install "mvactors[compiler]"' "$work/out" || { cat "$work/out"; exit 1; }

bare pip install --quiet "$wheel[compiler]" 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true
bare python "$root/.ci/readme_tour.py" "$root/README.md" | tee "$work/out"
grep -qx "Hello, World!" "$work/out"
bare mvactors --version
# The C call path is what a user installing the wheel gets (setup.py builds it as optional: a
# compiler failure at build time would silently leave the pure-Python path).
bare python -c 'from mvactors.vm import _calls; assert _calls.CALL_PATH == "c", _calls.CALL_PATH_REASON'
env PATH="$work/venv/bin" MVACTORS_PURE=1 python -c 'from mvactors.vm import _calls; assert _calls.CALL_PATH == "python"'
bare python -m mvactors call "$root/examples/hello/hello.js" 1 '"wheel"' --print-import 1 | tee "$work/out"
grep -qx "Hello, wheel! (greeting #1)" "$work/out"
# The dashboard extra: its pages and vendored htmx come from the wheel itself.
bare pip install --quiet "$wheel[dashboard]" 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true
bare python "$root/.ci/dashboard_smoke.py"
echo "wheel check passed"

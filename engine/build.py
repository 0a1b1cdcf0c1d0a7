"""Build the Microvium engine for mvactors.

Fetches the pinned `microvium` npm package (engine source and compiler), then
compiles `dist-c/microvium.c` with our port header and glue:

* to WebAssembly with the pinned `ziglang` wheel's clang -> mvactors/vm/_engine/mvx.wasm
* natively with the machine's gcc -O2 -> mvactors/vm/_engine/libmvx_native.so
  (the speed and fidelity reference; skipped with --wasm-only)

Run: python engine/build.py [--wasm-only] [--force]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ENGINE_DIR = Path(__file__).resolve().parent
SRC = ENGINE_DIR / "src"
DIST_C = ENGINE_DIR / "node_modules" / "microvium" / "dist-c"
OUT = ENGINE_DIR.parent / "mvactors" / "vm" / "_engine"

WASM_MEMORY_BYTES = 6 * 65536  # fixed: the module never grows, so the host's base pointer stays valid
# The patched engine copy (see ENGINE_PATCHES) comes first on the include path.
PATCHED_DIR_NAME = "engine"
COMMON_FLAGS = ["-O2", "-std=c11", f"-I{SRC}", f"-I{DIST_C}", "-Wno-unused-function"]


def run(cmd: list[str], cwd: Path | None = None) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=cwd, check=True)


def ensure_microvium() -> None:
    if (DIST_C / "microvium.c").exists() and (ENGINE_DIR / "node_modules" / ".bin" / "microvium").exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        sys.exit("engine/build.py: npm is required to fetch the pinned microvium package")
    # --ignore-scripts: the package's native addon is not needed; the CLI compiler runs without it.
    run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=ENGINE_DIR)


def sources_digest() -> str:
    h = hashlib.sha256()
    for path in sorted(SRC.rglob("*")) + [DIST_C / "microvium.c", DIST_C / "microvium.h", Path(__file__)]:
        if path.is_file():
            h.update(path.name.encode())
            h.update(path.read_bytes())
    return h.hexdigest()


# Upstream bugs in microvium@8.0.0, fixed in a build-time copy of the engine
# (the package itself stays untouched).  Each patch must apply exactly once, so
# a version bump that changes the code fails the build instead of silently
# dropping the fix.
ENGINE_PATCHES = [
    (
        # The GC checks room for an object's extension properties as one word
        # each, but copies two (key and value), so it can write up to a child
        # list's size past the end of its to-space bucket and corrupt the heap.
        "uint16_t* end = writePtr + childPropCount;",
        "uint16_t* end = writePtr + childPropCount * 2;",
    ),
]


def patched_engine_source(tmp: Path) -> Path:
    """A copy of microvium.c with ENGINE_PATCHES applied; returns its directory."""
    source = (DIST_C / "microvium.c").read_text(encoding="utf-8")
    for old, new in ENGINE_PATCHES:
        count = source.count(old)
        if count != 1:
            sys.exit(f"engine/build.py: expected one occurrence of {old!r} in microvium.c, found {count}")
        source = source.replace(old, new)
    out = tmp / "engine"
    out.mkdir(exist_ok=True)
    (out / "microvium.c").write_text(source, encoding="utf-8")
    return out


def build_wasm(tmp: Path) -> None:
    zig = [sys.executable, "-m", "ziglang", "cc", "--target=wasm32-freestanding", f"-I{tmp / PATCHED_DIR_NAME}"]
    # Without non-trapping float-to-int, clang guards out-of-range conversions
    # and yields INT_MIN like x86 (the native reference) instead of saturating.
    flags = COMMON_FLAGS + ["-mbulk-memory", "-mno-nontrapping-fptoint", "-nostdlib", f"-I{SRC / 'libc'}"]
    run(zig + flags + ["-c", str(SRC / "glue.c"), "-o", str(tmp / "glue.o")])
    run(zig + flags + ["-c", str(SRC / "libc.c"), "-o", str(tmp / "libc.o")])
    run(
        zig
        + ["-O2", "-nostdlib", "-o", str(OUT / "mvx.wasm"), str(tmp / "glue.o"), str(tmp / "libc.o")]
        + [
            "-Wl,--no-entry",
            "-Wl,--strip-all",
            "-Wl,-z,stack-size=14336",
            f"-Wl,--initial-memory={WASM_MEMORY_BYTES}",
            f"-Wl,--max-memory={WASM_MEMORY_BYTES}",
        ]
    )


def build_native(tmp: Path) -> None:
    cc = os.environ.get("CC", "gcc")
    run(
        [cc, f"-I{tmp / PATCHED_DIR_NAME}", *COMMON_FLAGS, "-DMVX_NATIVE", "-fPIC", "-shared", "-fvisibility=hidden"]
        + ["-o", str(OUT / "libmvx_native.so"), str(SRC / "glue.c"), "-lm"]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wasm-only", action="store_true", help="skip the native reference build")
    parser.add_argument("--force", action="store_true", help="rebuild even if sources are unchanged")
    args = parser.parse_args()

    ensure_microvium()
    OUT.mkdir(parents=True, exist_ok=True)
    stamp = OUT / "build.stamp"
    digest = sources_digest() + (":wasm" if args.wasm_only else ":all")
    if not args.force and stamp.exists() and stamp.read_text() == digest:
        print("engine is up to date:", OUT)
        return
    tmp = OUT / "obj"
    tmp.mkdir(exist_ok=True)
    patched_engine_source(tmp)
    build_wasm(tmp)
    if not args.wasm_only:
        build_native(tmp)
    shutil.rmtree(tmp)
    stamp.write_text(digest)
    print("built engine into", OUT)


if __name__ == "__main__":
    main()

"""mvactors.compile: what it accepts, how it finds the compiler, and what its errors say."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

import mvactors
from mvactors import compiler

ENGINE = Path(__file__).resolve().parents[2] / "engine"
GUEST = Path(__file__).resolve().parents[1] / "guest"


def test_a_str_path_that_does_not_exist_is_not_compiled_as_source(tmp_path):
    with pytest.raises(FileNotFoundError) as excinfo:
        mvactors.compile(str(tmp_path / "nope.js"))
    assert excinfo.value.filename == str(tmp_path / "nope.js")
    with pytest.raises(FileNotFoundError):
        mvactors.compile(tmp_path / "nope.mjs")
    with pytest.raises(FileNotFoundError):
        mvactors.compile(tmp_path / "no-suffix")


@pytest.mark.parametrize("value", [b"vmExport(1, () => 1);", bytearray(b"x"), 42, None, ["a.js"]])
def test_other_types_are_a_type_error_naming_the_type(value):
    with pytest.raises(TypeError, match=type(value).__name__):
        mvactors.compile(value)


def test_paths_compile_in_place_so_relative_imports_resolve(tmp_path):
    (tmp_path / "lib.mjs").write_text("export const base = 40;\n", encoding="utf-8")
    main = tmp_path / "main.mjs"
    # Copied at top level: an imported binding read later inside a function is undefined at run time
    # (docs/guest-language.md).
    main.write_text(
        "import { base } from './lib.mjs';\nconst b = base;\nvmExport(1, (x) => b + x);\n", encoding="utf-8"
    )
    with mvactors.VM.restore(mvactors.compile(main)) as vm:
        assert vm.exports[1](2) == 42


@pytest.mark.parametrize("name", ["Math", "Object", "Error", "Array", "String", "Symbol", "parseInt"])
def test_a_missing_global_is_named_and_points_to_the_guide(name):
    with pytest.raises(mvactors.CompileError) as excinfo:
        mvactors.compile(f"vmExport(1, () => {name});\n")
    message = str(excinfo.value)
    assert f"uses the global {name}," in message
    assert "docs/guest-language.md" in message


def test_without_node_the_error_gives_the_pip_command(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    monkeypatch.setattr(compiler, "_wheel_node", lambda: None)
    with pytest.raises(mvactors.CompileError, match=r'pip install "mvactors\[compiler\]"'):
        compiler.compiler_command()


def test_without_a_compiler_the_error_gives_the_pip_command(monkeypatch, tmp_path):
    monkeypatch.delenv("MVACTORS_MICROVIUM", raising=False)
    monkeypatch.setattr(compiler, "_CHECKOUT_CLI", tmp_path / "absent.js")
    monkeypatch.setattr(compiler, "_BUNDLED_CLI", tmp_path / "absent.cjs")
    with pytest.raises(mvactors.CompileError, match=r'pip install "mvactors\[compiler\]"'):
        compiler.compiler_command()


def test_mvactors_microvium_names_the_compiler_to_run(monkeypatch, tmp_path):
    fake = tmp_path / "fake-microvium.cjs"
    fake.write_text("console.error('fake compiler ran'); process.exit(3);\n", encoding="utf-8")
    monkeypatch.setenv("MVACTORS_MICROVIUM", str(fake))
    script = tmp_path / "x.js"
    script.write_text("vmExport(1, () => 1);\n", encoding="utf-8")
    with pytest.raises(mvactors.CompileError, match="fake compiler ran"):
        mvactors.compile(script)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """The one-file compiler bundle the wheel build makes (engine/bundle-compiler.mjs)."""
    if not (ENGINE / "node_modules" / ".bin" / "esbuild").exists():
        pytest.skip("engine/node_modules has no esbuild: run ./dev setup")
    out = tmp_path_factory.mktemp("bundle") / "microvium.cjs"
    subprocess.run(["node", str(ENGINE / "bundle-compiler.mjs"), str(out)], check=True, timeout=120)
    return out


def test_the_bundled_compiler_makes_the_same_snapshots(bundle, tmp_path, monkeypatch):
    scripts = sorted(GUEST.glob("*.js"))
    assert len(scripts) > 5
    reference = {s.name: mvactors.compile(s) for s in scripts}
    # Outside the checkout, so nothing but the bundle itself is on hand.
    alone = tmp_path / "alone" / "microvium.cjs"
    alone.parent.mkdir()
    shutil.copy(bundle, alone)
    monkeypatch.setenv("MVACTORS_MICROVIUM", str(alone))
    assert {s.name: mvactors.compile(s) for s in scripts} == reference

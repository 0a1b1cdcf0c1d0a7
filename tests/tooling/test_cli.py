"""The mvactors command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mvactors.cli import main

HELLO = Path(__file__).resolve().parents[2] / "examples" / "hello" / "hello.js"


def test_compile_info_call_and_save_round_trip(tmp_path, capsys):
    snapshot = tmp_path / "hello.mvm-bc"
    assert main(["compile", str(HELLO), "-o", str(snapshot)]) == 0
    assert snapshot.read_bytes()[:1] == bytes([8])  # bytecode version 8

    capsys.readouterr()
    assert main(["info", str(snapshot)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["imports"] == [1] and info["exports"] == [1]
    assert info["engine_version"] == "8.0.0"

    saved = tmp_path / "after.mvm-bc"
    assert main(["call", str(snapshot), "1", '"CLI"', "--print-import", "1", "--save", str(saved)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == ["Hello, CLI! (greeting #1)", "1"]
    assert main(["call", str(saved), "1", '"again"']) == 0
    assert capsys.readouterr().out.strip() == "2"  # the saved snapshot kept the counter


def usage_error(argv: list[str], capsys) -> str:
    """The stderr of an argparse-style usage error (exit status 2)."""
    with pytest.raises(SystemExit) as excinfo:
        main(argv)
    assert excinfo.value.code == 2
    return capsys.readouterr().err.splitlines()[-1]


def test_usage_errors_name_the_argument_and_say_what_to_type(tmp_path, capsys):
    assert usage_error(["call", str(HELLO), "1", "World"], capsys) == (
        "mvactors call: error: argument JSON: 'World' is not JSON (Expecting value at column 1); "
        """a string needs JSON quotes inside the shell's: '"World"'"""
    )
    assert "argument export: 'one' is not an export ID" in usage_error(["call", str(HELLO), "one"], capsys)
    assert "argument export: the snapshot has no export 7; it has [1]" in usage_error(["call", str(HELLO), "7"], capsys)
    missing = str(tmp_path / "nope.js")
    assert f"argument snapshot: no such file: {missing!r}" in usage_error(["info", missing], capsys)
    assert f"argument script: no such file: {missing!r}" in usage_error(["compile", missing], capsys)
    assert "argument --gas: 'lots' is not an instruction count" in usage_error(
        ["call", str(HELLO), "1", "--gas", "lots"], capsys
    )


def test_python_dash_m_runs_the_same_command():
    command = [sys.executable, "-m", "mvactors", "call", str(HELLO), "1"]
    proc = subprocess.run([*command, '"module"', "--print-import", "1"],
                          capture_output=True, text=True, timeout=120, check=True)
    assert proc.stdout.splitlines() == ["Hello, module! (greeting #1)", "1"]
    proc = subprocess.run([*command, "x"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "argument JSON" in proc.stderr


def test_engine_and_compile_errors_are_reported_not_raised(tmp_path, capsys):
    broken = tmp_path / "broken.js"
    broken.write_text("vmExport(1, () => Math.floor(1.5));\n", encoding="utf-8")
    assert main(["compile", str(broken)]) == 1
    assert "uses the global Math" in capsys.readouterr().err
    bad = tmp_path / "bad.mvm-bc"
    bad.write_bytes(b"\x08" * 10)
    assert main(["info", str(bad)]) == 1
    assert "truncated" in capsys.readouterr().err


def test_without_redis_the_command_works_and_worker_says_what_to_install():
    # The [redis] extra missing: redis cannot be imported.
    code = "import sys; sys.modules['redis'] = None; from mvactors.cli import main; sys.exit(main(sys.argv[1:]))"
    ok = subprocess.run([sys.executable, "-c", code, "call", str(HELLO), "1", '"no redis"'],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    worker = subprocess.run([sys.executable, "-c", code, "worker", "--redis", "redis://localhost"],
                            capture_output=True, text=True, timeout=120)
    assert worker.returncode == 2
    assert 'pip install "mvactors[redis]"' in worker.stderr

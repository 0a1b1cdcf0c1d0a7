"""The mvactors command line."""

from __future__ import annotations

import json
from pathlib import Path

from mvactors.cli import main

HELLO = Path(__file__).resolve().parent.parent / "examples" / "hello" / "hello.js"


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


def test_errors_are_reported_not_raised(tmp_path, capsys):
    assert main(["call", str(HELLO), "7"]) == 1
    assert "no export 7" in capsys.readouterr().err
    bad = tmp_path / "bad.mvm-bc"
    bad.write_bytes(b"\x08" * 10)
    assert main(["info", str(bad)]) == 1
    assert "truncated" in capsys.readouterr().err

"""The examples keep working: each runs as its README says, in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> str:
    done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_hello_runs_and_resumes_from_its_snapshot():
    out = run("examples/hello/host.py")
    assert "Hello, World! (greeting #1)" in out
    assert "greetings so far: 3" in out


def test_fleet_is_deterministic_and_reports_a_summary(tmp_path):
    args = ("examples/fleet/run.py", "--devices", "40", "--hours", "0.1", "--seed", "11", "--quiet")
    first = run(*args, "--report", str(tmp_path / "a"))
    second = run(*args, "--max-resident", "10", "--report", str(tmp_path / "b"))
    a, b = (json.loads((tmp_path / d / "summary.json").read_text()) for d in "ab")
    assert a["digest"] == b["digest"] and a["failed"] == b["failed"] == 0
    assert a["hibernations"] == 0 < b["hibernations"]
    assert f"state digest   │ {a['digest']}" in first and a["digest"] in second  # the summary table
    devices = (tmp_path / "a" / "devices.csv").read_text().splitlines()
    assert len(devices) == 41 and devices[0].startswith("device,")
    assert devices == (tmp_path / "b" / "devices.csv").read_text().splitlines()
    png = (tmp_path / "a" / "fleet.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000

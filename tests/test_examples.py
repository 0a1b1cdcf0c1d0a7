"""The examples keep working: each runs as its README says, in a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> str:
    done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_hello_runs_and_resumes_from_its_snapshot():
    out = run("examples/hello/host.py")
    assert "Hello, World! (greeting #1)" in out
    assert "greetings so far: 3" in out


def test_fleet_is_deterministic_and_reports_a_summary():
    args = ("examples/fleet/run.py", "--devices", "40", "--hours", "0.1", "--seed", "11", "--quiet")
    first, second = run(*args), run(*args, "--max-resident", "10")
    digest = [line for line in first.splitlines() if line.startswith("state digest")]
    assert digest and digest == [line for line in second.splitlines() if line.startswith("state digest")]
    assert "failed actors      0" in first

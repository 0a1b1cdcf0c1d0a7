"""examples/operations runs: retry, replay catching a divergence, upgrade, fork, a gas pause resumed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def test_operations_example_runs_every_step() -> None:
    done = subprocess.run([sys.executable, "examples/operations/run.py"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "retried; balance = 100" in out
    assert "on its own code: {'turns': 4, 'diverged': None}" in out and "on v2_buggy: diverged at turn 1" in out
    assert "balance kept: 125" in out
    assert "account-1-at-turn-1: balance = 100 (the original: 125)" in out
    assert "the waiting caller got 50000" in out

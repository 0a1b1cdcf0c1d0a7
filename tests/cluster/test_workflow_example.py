"""examples/workflow runs as ./dev demo runs it: every order completes once despite a kill -9."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def test_workflow_example_completes_every_order_once() -> None:
    done = subprocess.run([sys.executable, "examples/workflow/run.py", "--orders", "9"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "kill -9 worker-" in done.stdout
    assert "all 9 orders shipped" in done.stdout
    assert "each order charged once and shipped once: yes" in done.stdout

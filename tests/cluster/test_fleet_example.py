"""examples/fleet --workers N: the device fleet as durable actors on worker processes over Redis."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def test_fleet_on_two_workers_applies_every_message_exactly(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "examples/fleet/run.py", "--workers", "2", "--devices", "6",
                           "--seconds", "2", "--period", "0.5", "--report", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    # The example checks each device's samples, setpoint, time in states, mailbox and committed
    # turn count against what it sent; 6 devices x 4 samples each.
    assert "every device applied every message: yes" in out
    assert re.search(r"samples +│ 24 \(", out)
    assert "SIGTERM (graceful handoff): worker-1 0, worker-2 0" in out
    assert "simulated time is wall time" in out
    owners = re.findall(r"fleet-[0-9a-f]{8}/dev-\d{6} │ (worker-\d) ", out)
    assert len(owners) == 6 and set(owners) <= {"worker-1", "worker-2"}
    spread = re.search(r"devices per worker: (.*?) \(", out)
    assert spread is not None and sum(int(n) for n in re.findall(r"worker-\d (\d+)", spread.group(1))) == 6
    # As without --workers: a progress bar on stderr, and --report's files.
    assert "100%" in done.stderr and "turns committed" in done.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["samples"] == 24 and summary["wrong"] == []
    with (tmp_path / "devices.csv").open() as f:
        devices = list(csv.DictReader(f))
    assert sorted(d["owner"] for d in devices) == sorted(owners)
    assert sum(int(d["turns"]) for d in devices) == summary["turns"]
    png = (tmp_path / "fleet.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000


def test_fleet_rejects_in_process_options_with_workers() -> None:
    done = subprocess.run([sys.executable, "examples/fleet/run.py", "--workers", "2", "--max-resident", "10"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--max-resident applies to the in-process fleet only" in done.stderr

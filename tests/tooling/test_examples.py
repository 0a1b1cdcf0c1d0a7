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


def test_a_fleet_too_large_for_the_process_says_which_flag_to_pass():
    # Address space capped at 2.5 GB: a few thousand live VMs (384 KiB each) fit, 50,000 do not.
    import resource

    def cap_address_space() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2_500_000_000, 2_500_000_000))

    done = subprocess.run(
        [sys.executable, "examples/fleet/run.py", "--devices", "50000", "--hours", "0.01", "--quiet",
         "--max-resident", "none"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, preexec_fn=cap_address_space)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "max_map_count" not in done.stderr
    assert "live VMs" in done.stderr and "Run again with --max-resident " in done.stderr


def test_the_fleet_caps_residency_only_when_the_devices_would_not_fit(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "examples" / "fleet"))
    import run as fleet

    monkeypatch.setattr(fleet, "available_kib", lambda: 2 * 1000 * fleet.RESIDENT_DEVICE_KIB)
    assert fleet.safe_max_resident(1000) is None
    assert fleet.safe_max_resident(1001) == 1000
    monkeypatch.setattr(fleet, "available_kib", lambda: None)
    assert fleet.safe_max_resident(10**6) is None


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

"""``examples/fleet/run.py --dashboard PORT``: the dashboard is up while the simulation runs; the run ends as usual."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_fleet_serves_its_dashboard_while_it_runs() -> None:
    proc = subprocess.Popen([sys.executable, "examples/fleet/run.py", "--devices", "100", "--hours", "0.5", "--quiet",
                             "--dashboard", "0"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert line.startswith("dashboard: http://127.0.0.1:"), line
        url = line.split(" ", 1)[1].strip()
        # Served from the simulation's own event loop, while it spawns and runs the devices.
        with urllib.request.urlopen(url + "actors?state=idle", timeout=30) as page:
            html = page.read().decode()
        assert page.status == 200 and "in-process Runtime" in html
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "state digest" in out  # the summary, as without --dashboard (stdin is no terminal: no wait)


def test_the_fleet_refuses_a_dashboard_it_cannot_serve() -> None:
    trio = subprocess.run([sys.executable, "examples/fleet/run.py", "--backend", "trio", "--dashboard", "0"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert trio.returncode == 2 and "asyncio" in trio.stderr

"""What both fleet modes show of a run: the progress bar, and ``--report DIR``'s files.

run.py's in-process fleet counts progress in simulated hours and samples its runtime once a
simulated minute; ``--workers N`` (workers.py) counts wall seconds and samples the committed
turns it reads from Redis.  Both write the same three files.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devices import STATE_NAMES
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn


@dataclass
class Timeline:
    """Turn counts (and, in process, turn latencies) sampled during a run, for the report's charts."""

    unit: str  # of ``at``: "simulated minute" or "second"
    at: list[float] = field(default_factory=list)
    turns: list[int] = field(default_factory=list)
    p50_us: list[float] = field(default_factory=list)  # empty where the latencies are not known
    p99_us: list[float] = field(default_factory=list)
    # Devices in each state at each sample (empty where the states are not seen: --workers).
    states: dict[str, list[int]] = field(default_factory=dict)

    def add_states(self, counts: dict[str, int]) -> None:
        for name in STATE_NAMES:
            self.states.setdefault(name, []).append(counts.get(name, 0))


def status_columns(status: dict[str, Any]) -> dict[str, Any]:
    """devices.csv's columns from a device's ``status()`` (thermostat.js)."""
    return {
        "setpoint": status["setpoint"],
        "state": status["state"],
        "temperature": status["temperature"],
        "abs_error_c": round(abs(status["temperature"] - status["setpoint"]), 4),
        "transitions": status["transitions"],
        "samples": status["samples"],
        "sensor_errors": status["sensorErrors"],
        **{f"{name.lower()}_s": status[f"{name.lower()}Ms"] / 1000 for name in STATE_NAMES},
    }


def status_totals(statuses: list[dict[str, Any]]) -> dict[str, Any]:
    """The summary's figures over every device's final ``status()``."""
    state_ms = {name: sum(s[f"{name.lower()}Ms"] for s in statuses) for name in STATE_NAMES}
    total_ms = sum(state_ms.values()) or 1
    return {
        "state_share": {name: state_ms[name] / total_ms for name in STATE_NAMES},
        "state_device_hours": {name: state_ms[name] / 3_600_000 for name in STATE_NAMES},
        "final_states": {name: sum(1 for s in statuses if s["state"] == name) for name in STATE_NAMES},
        "transitions": sum(s["transitions"] for s in statuses),
        "samples": sum(s["samples"] for s in statuses),
        "sensor_errors": sum(s["sensorErrors"] for s in statuses),
        "mean_abs_error_c": sum(abs(s["temperature"] - s["setpoint"]) for s in statuses) / len(statuses),
    }


def status_rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    """The summary table's rows for :func:`status_totals`' figures (but the time in each state)."""
    return [
        ("final states", ", ".join(f"{name} {n}" for name, n in result["final_states"].items())),
        ("transitions", f"{result['transitions']}"),
        ("samples", f"{result['samples']} ({result['sensor_errors']} sensor errors)"),
        ("mean |T - set|", f"{result['mean_abs_error_c']:.3f} C at the end"),
    ]


def progress_bar(quiet: bool, unit: str, detail: str) -> Progress:
    """A rich progress bar on stderr (disabled by --quiet): completed/total in ``unit``, then ``detail``.

    Tasks carry a ``detail`` field: what the bar shows after ``detail`` (resident VMs, committed turns).
    """
    return Progress(
        TextColumn("[bold]simulating"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%  {task.completed:5.2f}/{task.total:.2f} " + unit),
        TextColumn(detail + " {task.fields[detail]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=quiet,
    )


def write_report(result: dict[str, Any], directory: Path) -> list[Path]:
    """summary.json, devices.csv and fleet.png in ``directory``; returns their paths.

    ``result``: the summary's figures; ``result["_devices"]`` one dict per device (the CSV rows),
    ``result["_timeline"]`` a :class:`Timeline`.  Keys starting with ``_`` stay out of the JSON.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    devices: list[dict[str, Any]] = result["_devices"]
    timeline: Timeline = result["_timeline"]
    summary = directory / "summary.json"
    summary.write_text(json.dumps({k: v for k, v in result.items() if not k.startswith("_")}, indent=2) + "\n")
    table = directory / "devices.csv"
    with table.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(devices[0]))
        writer.writeheader()
        writer.writerows(devices)

    latencies = bool(timeline.p50_us)
    states = bool(timeline.states)
    panels = 2 + latencies + states
    fig, axes = plt.subplots(panels, 1, figsize=(9, 3.3 * panels + 0.4), layout="constrained")
    # Which run this is, on the picture itself: a chart passed around loses its command line.
    if "simulated_hours" in result:
        length = f"{result['simulated_hours']:.2f} simulated hours"
    else:
        length = f"{result['wall_seconds']:g} wall seconds on {result['workers']} worker processes"
    fig.suptitle(f"{result['devices']:,} devices, seed {result['seed']}, {length}", fontweight="bold")
    turns_ax, error_ax = axes[0], axes[-1]
    # A rate, since samples need not be one unit apart (the last one, the worker fleet's).
    pairs = zip(timeline.at, timeline.at[1:], timeline.turns, timeline.turns[1:], strict=False)
    rates = [(t1, (n1 - n0) / (t1 - t0)) for t0, t1, n0, n1 in pairs if t1 > t0]
    turns_ax.plot([t for t, _ in rates], [rate for _, rate in rates], drawstyle="steps-pre")
    turns_ax.set(title=f"Turns per {timeline.unit}", xlabel=timeline.unit, ylabel="turns")
    # From 0, as the dashboard's turns/s chart: a small dip should look small.
    turns_ax.set_ylim(bottom=0)
    next_ax = 1
    if latencies:
        latency_ax = axes[next_ax]
        next_ax += 1
        latency_ax.plot(timeline.at[1:], timeline.p50_us[1:], label="p50")
        latency_ax.plot(timeline.at[1:], timeline.p99_us[1:], label="p99")
        latency_ax.set(title="Turn latency (recent turns, wall time)", xlabel=timeline.unit, ylabel="µs")
        latency_ax.set_ylim(bottom=0)
        latency_ax.legend()
    if states:
        states_ax = axes[next_ax]
        at = timeline.at[:len(next(iter(timeline.states.values())))]
        states_ax.stackplot(at, *(timeline.states[name] for name in STATE_NAMES), labels=list(STATE_NAMES),
                            step="post")
        states_ax.set(title="Devices by state over time", xlabel=timeline.unit, ylabel="devices")
        states_ax.set_ylim(0, result["devices"])
        states_ax.legend(loc="upper right")
    error_ax.hist([d["abs_error_c"] for d in devices], bins=40)
    error_ax.set(title="|temperature - setpoint| per device at the end", xlabel="°C", ylabel="devices")
    chart = directory / "fleet.png"
    fig.savefig(chart, dpi=100)
    plt.close(fig)
    return [summary, table, chart]

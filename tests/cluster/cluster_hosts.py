"""Import tables for the cluster suites' worker processes (``--imports cluster_hosts:IMPORTS``).

Side effects append lines to the file named by $MVACTORS_TEST_LOG, so a test can count
them across processes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio

import mvactors
import mvactors.imports


def _log(line: str) -> None:
    path = os.environ.get("MVACTORS_TEST_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")


def effect(text: str) -> None:
    _log(f"effect {text}")


async def charge(order_id: Any) -> str:
    key = mvactors.current_call().key
    _log(f"charge {order_id} {key}")
    return f"receipt-{order_id}"


async def fetch(x: Any) -> Any:
    """Returns ``x``; for ``"gate:NAME"`` only once the file $MVACTORS_TEST_GATES/NAME exists."""
    _log(f"fetch {x}")
    if isinstance(x, str) and x.startswith("gate:"):
        gate = Path(os.environ["MVACTORS_TEST_GATES"]) / x[5:]
        while not gate.exists():
            await anyio.sleep(0.02)  # a stand-in for a slow outside service
    return x


IMPORTS = {
    "counter": {1: effect, 2: mvactors.journaled(charge), 3: fetch, 9: mvactors.imports.sleep},
}

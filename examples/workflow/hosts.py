"""The outside world of the order workflow: a payment service, a carrier and a log.

Both services write to a ledger file ($WORKFLOW_LEDGER) and dedupe on the call's
idempotency key (``mvactors.current_call().key``), as a real payment API would: the
journal records each result before the guest sees it, and the key closes the one window
it cannot (the call ran, the worker died before the result was recorded).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import mvactors
import mvactors.imports


def _record(kind: str, order: str) -> bool:
    """Append ``kind order key`` to the ledger once per idempotency key; False for a repeat."""
    key = mvactors.current_call().key
    ledger = Path(os.environ.get("WORKFLOW_LEDGER", "ledger.txt"))
    with open(ledger, "a+", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # several worker processes write here
        f.seek(0)
        if any(line.split()[-1] == key for line in f if line.strip()):
            return False
        f.write(f"{kind} {order} {key}\n")
    return True


async def charge(order: str, cents: int) -> str:
    _record("charged", order)
    return f"receipt-{order}-{cents}"


async def ship(order: str, attempt: int) -> str:
    if attempt == 1 and int(order.rsplit("-", 1)[-1]) % 3 == 0:
        raise ConnectionError("carrier unavailable")  # every third order's first attempt fails
    _record("shipped", order)
    return f"track-{order}"


def log(text: str) -> None:
    print(f"  [guest] {text}", flush=True)


IMPORTS = {
    "orders": {1: mvactors.journaled(charge), 2: mvactors.journaled(ship), 3: log, 9: mvactors.imports.sleep},
}

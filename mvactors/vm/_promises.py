"""Guest promises seen from Python: awaited, polled, and settled after each guest call.

Awaiting a pending promise parks an event in ``vm._pending`` (slot -> event and
outcome); every guest call that returns checks them while any are parked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio

from ..errors import GuestError
from ._abi import PROMISE_STATE_NAMES, PromiseState
from ._marshal import result_value, slot_value

if TYPE_CHECKING:
    from .machine import VM
    from .values import GuestPromise


async def await_promise(vm: VM, promise: GuestPromise) -> Any:
    """The settled value of ``promise``; waits (without blocking the loop) while it is pending."""
    slot = promise._slot
    inst = vm._live()
    state = inst.promise_state(slot_value(vm, slot))
    if state == PromiseState.FULFILLED:
        return result_value(vm)
    if state == PromiseState.REJECTED:
        raise GuestError(result_value(vm))
    entry = vm._pending.get(slot)
    if entry is None:
        entry = vm._pending[slot] = (anyio.Event(), [])
        vm._slow = True
    event, outcome = entry
    vm._waiters += 1
    try:
        await event.wait()
    finally:
        vm._waiters -= 1
        if not event.is_set() and not vm._waiters:
            # Cancelled, and the last one waiting: the host calls in flight are nobody's now.
            from ._host import abandon_host_calls

            abandon_host_calls(vm)
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    return result


def settle_promises(vm: VM) -> None:
    """Wake the awaiters of promises that a guest call just settled."""
    inst = vm._inst
    if inst is None:
        return
    for slot, (event, outcome) in list(vm._pending.items()):
        state = inst.promise_state(slot_value(vm, slot))
        if state == PromiseState.PENDING:
            continue
        del vm._pending[slot]
        value = result_value(vm)
        outcome.append(value if state == PromiseState.FULFILLED else GuestError(value))
        event.set()
    vm._update_slow()


def fail_pending(vm: VM, exc: BaseException) -> None:
    """Make every awaited promise raise ``exc`` (the VM cannot settle them any more)."""
    for event, outcome in vm._pending.values():
        outcome.append(exc)
        event.set()
    vm._pending.clear()
    vm._update_slow()


def promise_outcome(vm: VM, promise: GuestPromise) -> tuple[str, Any]:
    """``(state, value)`` of a guest promise without awaiting it.

    ``state`` is ``"pending"`` (value None), ``"fulfilled"`` or ``"rejected"``.
    """
    if promise._heap is not vm:
        raise TypeError("the promise belongs to another VM")
    promise._observed = True
    state = vm._live().promise_state(slot_value(vm, promise._slot))
    if state in (PromiseState.FULFILLED, PromiseState.REJECTED):
        return PROMISE_STATE_NAMES[state], result_value(vm)
    return PROMISE_STATE_NAMES[PromiseState.PENDING], None


def promise_state(vm: VM, slot: int) -> str:
    """``"pending"``, ``"fulfilled"`` or ``"rejected"``."""
    state = vm._live().promise_state(slot_value(vm, slot))
    return PROMISE_STATE_NAMES.get(state, PROMISE_STATE_NAMES[PromiseState.PENDING])

"""The value mapping between Python and the guest: what may cross, and the errors when it may not."""

from __future__ import annotations

from typing import Any

from .values import MAX_SAFE_INT, GuestRef, null

_SCALAR_TYPES = frozenset({str, float, bool, type(None), bytes})


def unsafe_int(number: int) -> OverflowError:
    return OverflowError(
        f"int {number} is outside ±2**53 and has no exact JavaScript number; pass float(x) to accept rounding")


def bad_key(key: object) -> TypeError:
    return TypeError(f"dict keys passed to the VM must be str, not {type(key).__name__}")


def bad_type(value: object) -> TypeError:
    return TypeError(f"values of type {type(value).__name__} cannot be passed to the VM")


def check_args(args: tuple[Any, ...]) -> None:
    """Reject arguments no VM accepts, without a VM (e.g. when a message is queued, long before its call).

    Follows the value mapping of :class:`~mvactors.VM`: None, null, bool, int
    within ±2**53, float, str, bytes-like, lists/tuples, dicts with str keys,
    guest values and callables (import-map functions); anything else is a
    TypeError, an out-of-range int an OverflowError.  Finer checks (array
    lengths, key spellings, cycles) stay with the VM.
    """
    for value in args:  # the common case: scalars only, checked without building a stack
        t = type(value)
        if t is int:
            if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
                break
        elif t not in _SCALAR_TYPES:
            break
    else:
        return
    stack: list[Any] = list(args)
    seen: set[int] = set()
    while stack:
        value = stack.pop()
        if value is None or value is null or isinstance(value, (bool, float, str, bytes, bytearray, memoryview)):
            continue
        if isinstance(value, int):
            if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
                raise unsafe_int(value)
            continue
        if isinstance(value, (list, tuple, dict)):
            if id(value) in seen:
                continue  # shared or cyclic: checked once (the VM reports cycles)
            seen.add(id(value))
            if isinstance(value, dict):
                for key in value:
                    if not isinstance(key, str):
                        raise bad_key(key)
                stack.extend(value.values())
            else:
                stack.extend(value)
            continue
        if isinstance(value, GuestRef) or callable(value):
            continue
        raise bad_type(value)

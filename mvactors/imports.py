"""Host functions and their marks: ``async_import``, ``journaled``, ``sleep``, and the call being run.

>>> imports = {9: mvactors.imports.sleep}    # guest: `await sleep(ms)`
>>> imports = {1: mvactors.journaled(charge_card)}    # its result is journaled by a cluster worker
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, NamedTuple


class AsyncImport:
    """Marks a host function as asynchronous: the guest gets a promise of its result.

    ``async def`` functions are recognised automatically; wrap other callables
    that return awaitables with :func:`async_import`.
    """

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)

    def __repr__(self) -> str:
        return f"async_import({self.fn!r})"


def async_import(fn: Callable[..., Any]) -> AsyncImport:
    """Declare ``fn`` (returning an awaitable) an asynchronous host function."""
    return AsyncImport(fn)


class RuntimeImport:
    """A host function the runtime implements itself (bound to its clock, its actor)."""

    def __init__(self, name: str, doc: str) -> None:
        self.name = name
        self.__doc__ = doc

    def __repr__(self) -> str:
        return f"mvactors.imports.{self.name}"

    async def __call__(self, *args: Any) -> Any:  # pragma: no cover - the runtime intercepts it
        raise RuntimeError(f"mvactors.imports.{self.name} only works inside a mvactors.Runtime actor")


class Sleep(RuntimeImport):
    """The runtime's timer: the guest's promise settles ``ms`` milliseconds of the runtime clock later."""

    @staticmethod
    def delay(args: tuple[Any, ...]) -> float:
        """Seconds to wait for the guest's arguments (a missing, negative or non-number ``ms`` is 0)."""
        ms = args[0] if args else 0
        if isinstance(ms, (int, float)) and not isinstance(ms, bool):
            return max(0.0, float(ms) / 1000.0)
        return 0.0


sleep = Sleep(
    "sleep",
    "Guest `await sleep(ms)`: resolves after `ms` milliseconds of the runtime's clock "
    "(wall or virtual). Pending sleeps survive hibernation, checkpoints and migration: "
    "a record keeps their absolute due time.",
)


class Journaled:
    """An asynchronous host function whose result a cluster worker journals.

    The result is recorded before the guest sees it, so a replay after a crash
    delivers the recorded result instead of calling ``fn`` again.  In a plain
    :class:`~mvactors.Runtime` it behaves as an ordinary async host function.
    """

    def __init__(self, fn: Callable[..., Any]) -> None:
        if not callable(fn):
            raise TypeError(f"journaled() takes a host function, not {type(fn).__name__}")
        self.fn = fn
        self.__name__ = getattr(fn, "__name__", type(fn).__name__)
        self.__doc__ = getattr(fn, "__doc__", None)

    def __repr__(self) -> str:
        return f"mvactors.journaled({self.fn!r})"

    async def __call__(self, *args: Any) -> Any:
        return await self.fn(*args)


def journaled(fn: Callable[..., Any]) -> Journaled:
    """Mark ``fn`` (``async def``, or returning an awaitable) as a journaled async host function."""
    return fn if isinstance(fn, Journaled) else Journaled(fn)


class AsyncCall(NamedTuple):
    """One asynchronous host call a guest awaits (sleeps included), as the runtime starts it.

    ``key`` is stable for this call across replays and processes (the token
    comes from the actor's state), so an outside service can dedupe on it.
    ``due`` is set for sleeps: when it fires, on the runtime's clock.
    (A NamedTuple, not a frozen dataclass: one is made per async call, and it is 2x cheaper.)
    """

    actor_id: str
    token: int
    import_id: int
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    due: float | None = None

    @property
    def key(self) -> str:
        return f"{self.actor_id}/{self.token}"


# The call whose host function is running; set by the runtime around each async host call.
CURRENT_CALL: ContextVar[AsyncCall] = ContextVar("mvactors_current_call")


def current_call() -> AsyncCall:
    """The asynchronous host call being run (inside an async host function run by a Runtime).

    Raises LookupError elsewhere (plain code, synchronous host functions).
    """
    try:
        return CURRENT_CALL.get()
    except LookupError:
        raise LookupError("current_call() works inside an asynchronous host function that a "
                          "mvactors Runtime runs") from None


__all__ = ["CURRENT_CALL", "AsyncCall", "AsyncImport", "Journaled", "RuntimeImport", "Sleep", "async_import",
           "current_call", "journaled", "sleep"]

"""Host functions and their marks: :func:`async_import`, and the runtime's standard functions.

>>> imports = {9: mvactors.imports.sleep}    # guest: `await sleep(ms)`
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


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


sleep = RuntimeImport(
    "sleep",
    "Guest `await sleep(ms)`: resolves after `ms` milliseconds of the runtime's clock "
    "(wall or virtual). Pending sleeps survive hibernation.",
)

__all__ = ["AsyncImport", "RuntimeImport", "async_import", "sleep"]

"""Standard host functions for actors, bound to the runtime that runs them.

>>> imports = {9: mvactors.imports.sleep}    # guest: `await sleep(ms)`
"""

from __future__ import annotations

from typing import Any


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

__all__ = ["RuntimeImport", "sleep"]

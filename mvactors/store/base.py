"""The checkpoint store protocol."""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class CheckpointStore(Protocol):
    """Durable map from actor ID to its latest checkpoint record.

    ``save`` replaces the previous record atomically: a reader sees the old or
    the new record, never a mix.
    """

    async def save(self, actor_id: str, record: bytes) -> None:
        """Store ``record`` as the latest checkpoint of ``actor_id``."""
        ...

    async def load(self, actor_id: str) -> bytes | None:
        """The latest checkpoint of ``actor_id``, or None if there is none."""
        ...

    async def delete(self, actor_id: str) -> None:
        """Forget ``actor_id`` (no error if absent)."""
        ...

    async def ids(self) -> list[str]:
        """IDs of all stored actors, sorted."""
        ...

    async def aclose(self) -> None:
        """Release resources."""
        ...

"""An in-process checkpoint store (tests, simulations)."""

from __future__ import annotations


class MemoryStore:
    """Checkpoints in a dict; lost with the process."""

    def __init__(self) -> None:
        self._records: dict[str, bytes] = {}

    async def save(self, actor_id: str, record: bytes) -> None:
        self._records[actor_id] = bytes(record)

    async def load(self, actor_id: str) -> bytes | None:
        return self._records.get(actor_id)

    async def delete(self, actor_id: str) -> None:
        self._records.pop(actor_id, None)

    async def ids(self) -> list[str]:
        return sorted(self._records)

    async def aclose(self) -> None:
        pass

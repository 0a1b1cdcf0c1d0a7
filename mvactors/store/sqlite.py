"""A checkpoint store in one SQLite file (no server)."""

from __future__ import annotations

import sqlite3
import threading
from os import PathLike

import anyio.to_thread


class SQLiteStore:
    """Checkpoints in an SQLite database file; survives process crashes.

    Writes are single-statement upserts in WAL mode, so a crash leaves either
    the previous or the new record.  Calls run in a worker thread.
    """

    def __init__(self, path: str | PathLike[str]) -> None:
        self._path = str(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS checkpoints (actor_id TEXT PRIMARY KEY, record BLOB NOT NULL)")

    def _run(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    async def save(self, actor_id: str, record: bytes) -> None:
        await anyio.to_thread.run_sync(
            self._run,
            "INSERT INTO checkpoints (actor_id, record) VALUES (?, ?) "
            "ON CONFLICT(actor_id) DO UPDATE SET record = excluded.record",
            (actor_id, bytes(record)),
        )

    async def load(self, actor_id: str) -> bytes | None:
        rows = await anyio.to_thread.run_sync(
            self._run, "SELECT record FROM checkpoints WHERE actor_id = ?", (actor_id,)
        )
        return bytes(rows[0][0]) if rows else None  # type: ignore[call-overload]

    async def delete(self, actor_id: str) -> None:
        await anyio.to_thread.run_sync(self._run, "DELETE FROM checkpoints WHERE actor_id = ?", (actor_id,))

    async def ids(self) -> list[str]:
        rows = await anyio.to_thread.run_sync(self._run, "SELECT actor_id FROM checkpoints ORDER BY actor_id")
        return [str(row[0]) for row in rows]

    async def aclose(self) -> None:
        with self._lock:
            self._db.close()

"""Checkpoint stores: where actors' records (snapshot + pending work) are kept by actor ID.

All stores implement :class:`CheckpointStore`; records are opaque bytes.
"""

from .base import CheckpointStore
from .memory import MemoryStore
from .sqlite import SQLiteStore

__all__ = ["CheckpointStore", "MemoryStore", "SQLiteStore"]

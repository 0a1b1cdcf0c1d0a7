"""Snapshots as the VM reads them: what may be passed as one, and the facts its header gives."""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

from ..errors import E_UNRESOLVED_IMPORT, MicroviumError, error_name
from ._abi import (
    EXPORT_ENTRY_SIZE,
    ROM_SIZE,
    SECTION_EXPORT_TABLE,
    SNAPSHOT_HEADER_SIZE,
    SNAPSHOT_MINOR_AT,
    SNAPSHOT_SECTIONS_AT,
    SNAPSHOT_VERSION_AT,
    import_table_at,
)

if TYPE_CHECKING:
    from ._wasm import Instance

SnapshotLike = bytes | bytearray | memoryview | Sequence[int] | str | os.PathLike[str]
"""Snapshot bytes, a sequence of ints 0..255, or the path of a snapshot file."""


def snapshot_bytes(snapshot: SnapshotLike) -> bytes:
    """The bytes of ``snapshot``."""
    if isinstance(snapshot, bytes):
        return snapshot
    if isinstance(snapshot, (bytearray, memoryview)):
        return bytes(snapshot)
    if isinstance(snapshot, (str, os.PathLike)):
        path = Path(snapshot)
        if not path.is_file():
            raise FileNotFoundError(f"snapshot file not found: {path}")
        return path.read_bytes()
    if isinstance(snapshot, Sequence):
        try:
            return bytes(list(cast("Sequence[int]", snapshot)))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"a snapshot sequence must hold ints in 0..255 ({exc})") from None
    raise TypeError(f"snapshot must be bytes, a sequence of ints or a path, not {type(snapshot).__name__}")


def check_size(data: bytes) -> None:
    """Refuse what cannot be a snapshot the engine restores: less than a header, more than its ROM area."""
    if len(data) < SNAPSHOT_HEADER_SIZE:
        raise MicroviumError(f"snapshot is truncated: {len(data)} bytes is smaller than a snapshot header",
                             "MVM_E_INVALID_BYTECODE")
    if len(data) > ROM_SIZE:
        raise MicroviumError(f"snapshot is {len(data)} bytes; the engine accepts at most {ROM_SIZE}",
                             "MVM_E_SNAPSHOT_TOO_LARGE")


def load_snapshot(instance: Instance, data: bytes, import_table: bytes) -> None:
    """Write ``data`` and the glue's import table where the glue's restore reads them."""
    rom = instance.base + instance.layout.rom
    ctypes.memmove(rom, data, len(data))
    ctypes.memmove(rom + import_table_at(len(data)), import_table, len(import_table))


def required_version(data: bytes) -> str:
    """The engine version a snapshot was compiled for, e.g. ``"8.0.0"``."""
    return f"{data[SNAPSHOT_VERSION_AT]}.{data[SNAPSHOT_MINOR_AT]}.0"


def export_ids(data: bytes) -> list[int]:
    """The IDs in the snapshot's export table, in table order."""
    # The section runs to the next section's offset; entries are (id, value).
    at = SNAPSHOT_SECTIONS_AT + 2 * SECTION_EXPORT_TABLE
    start = int.from_bytes(data[at:at + 2], "little")
    end = int.from_bytes(data[at + 2:at + 4], "little")
    return [int.from_bytes(data[i:i + 2], "little") for i in range(start, end, EXPORT_ENTRY_SIZE)]


_RESTORE_HINTS = {
    "MVM_E_BYTECODE_CRC_FAIL": "the snapshot is corrupted (CRC mismatch)",
    "MVM_E_INVALID_BYTECODE": "the snapshot is truncated or not a Microvium snapshot",
}


def restore_error(err: int, data: bytes, engine_version: str, missing_import: int) -> MicroviumError:
    """The error for the engine refusing to restore ``data`` with mvm_TeError ``err``."""
    if err == E_UNRESOLVED_IMPORT:
        error = MicroviumError(f"the snapshot imports host function {missing_import}, which is not in the import map",
                               err)
        error.missing_import = missing_import
        return error
    name = error_name(err)
    if name == "MVM_E_WRONG_BYTECODE_VERSION":
        hint = (f"the snapshot is for bytecode version {data[SNAPSHOT_VERSION_AT]}, this engine runs version "
                f"{engine_version.split('.')[0]}")
    elif name == "MVM_E_REQUIRES_LATER_ENGINE":
        hint = f"the snapshot needs engine {required_version(data)}, this is {engine_version}"
    else:
        hint = _RESTORE_HINTS.get(name, name)
    return MicroviumError(f"cannot restore snapshot: {hint} ({name})", err)


__all__ = ["SnapshotLike", "check_size", "export_ids", "load_snapshot", "required_version", "restore_error",
           "snapshot_bytes"]

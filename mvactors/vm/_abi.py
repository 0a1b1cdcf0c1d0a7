"""The host ABI of the engine glue (engine/src/glue.c), in one table.

Everything the host and the glue must agree on is written here once: operation
numbers, ``mvx_layout()`` indexes, limits, encodings and the engine values the
host decodes without calling in.  ``engine/build.py`` turns the ``Op``,
``Field``, ``PromiseState`` and ``HeapInfo`` tables and the limits into the C
header the glue compiles against (``mvx_abi.h``), plus static assertions that
the engine's own constants equal ``ENGINE_FACTS`` and the error codes of
:mod:`mvactors.errors`; the build fails when they disagree.  The build also
writes :func:`digest` of these tables into the wasm module (a custom section),
and the wasm driver refuses a module whose digest differs when it loads it
(a stale build); the native build is checked by its limits.

Only plain ints here (no enums): some of these are read on every call.  This
module imports nothing of mvactors, so the build can load it by path.
"""

from __future__ import annotations

import hashlib

PAGE_SIZE = 0x10000
WASM_MEMORY_BYTES = 6 * PAGE_SIZE
"""Linear memory of the wasm module: fixed at build time, never grown, so its base address stays valid."""

# ---- limits of the glue's static areas (compiled into the glue as MVX_<name>) ----

MAX_ARGS = 32
MAX_HANDLES = 4096
MAX_IMPORTS = 1024
SCRATCH_SIZE = 0x10000
ROM_SIZE = 0x10000
IMPORT_ASYNC = 0x10000
"""Flag above the 16 ID bits of an import table entry: the import is asynchronous."""
MAX_ID = 0xFFFF
"""Largest import or export ID (16 bits)."""

LIMITS = {
    "MAX_ARGS": MAX_ARGS,
    "MAX_HANDLES": MAX_HANDLES,
    "MAX_IMPORTS": MAX_IMPORTS,
    "SCRATCH_SIZE": SCRATCH_SIZE,
    "ROM_SIZE": ROM_SIZE,
    "IMPORT_ASYNC": IMPORT_ASYNC,
    "ID_MASK": MAX_ID,
    "CALL_ARGC_SHIFT": 16,
    "CALL_ARGC_MASK": 0xFF,
    "CALL_SLOT_MASK": 0xFFFF,
    "HOST_CALL_COOKIE_SHIFT": 16,
    "HOST_CALL_BITS": 64,  # mvh.call's parameter (in the digest: an engine built with 32 is stale)
    "MEMORY_STATS_FIELDS": 12,
    "FATAL_PHASE_SHIFT": 8,
    "FATAL_HEAP_SHIFT": 10,
    "PHASE_GC": 1,
    "PHASE_SNAPSHOT": 2,
}



def import_table_at(snapshot_size: int) -> int:
    """Offset from ROM where the glue reads the import table: right after the snapshot, 8-byte aligned."""
    return (snapshot_size + 7) & ~7


# ---- packed parameters ----

CALL_ARGC_SHIFT = LIMITS["CALL_ARGC_SHIFT"]
"""mvx_call(slot | argc << 16 | CALL_GUARD): the function's handle slot, the argument count."""
CALL_GUARD = -(2**31)
"""Bit 31 of mvx_call's parameter (as a signed int32): left in place by a trap, it equals no result."""
TRAPPED_BELOW = -0x10000
"""mvx_call results are values (>= 0) or -error codes; anything lower is the untouched CALL_GUARD."""
HOST_CALL_COOKIE_SHIFT = LIMITS["HOST_CALL_COOKIE_SHIFT"]
"""mvh.call(cookie << 16 | import id), a 64-bit parameter: which instance calls which import."""
COOKIE_MAX = 0xFFFF_FFFF
"""mvx.cookie is 32 bits; the packed host-call parameter is 64, so instances are not limited to 65,535."""
MEMORY_STATS_FIELDS = LIMITS["MEMORY_STATS_FIELDS"]
"""mvm_TsMemoryStats: this many size_t fields, in declaration order."""

# mvx.call_args .. call_depth: five adjacent uint32 fields describing the host call in progress
# (depth: host calls and breakpoints in progress, so nonzero means the instance is busy).
CALL_INFO_ARGS, CALL_INFO_ARGC, CALL_INFO_RESULT, CALL_INFO_ASYNC, CALL_INFO_DEPTH = 0, 1, 2, 3, 4


class Op:
    """Operation numbers of the wasm module's ``mvx_op(op, a, b, c)`` dispatcher (MVX_OP_<name>)."""

    LAYOUT = 0
    RESTORE = 1
    FREE_VM = 2
    LINK_HANDLES = 3
    EXPORT = 4
    GET = 5
    SET = 6
    KEYS = 7
    NEW_NUMBER = 8  # parameter in mvx.f64
    NEW_STRING = 9
    NEW_BYTES = 10
    NEW_ARRAY = 11
    NEW_OBJECT = 12
    TYPE_OF = 13
    TO_NUMBER = 14  # result in mvx.f64
    EQUAL = 15
    STRING = 16
    BYTES = 17
    PROMISE_STATE = 18
    SNAPSHOT = 19
    GC = 20
    MEMORY_STATS = 21
    SET_GAS = 22
    GET_GAS = 23
    SET_BREAKPOINT = 24
    REMOVE_BREAKPOINT = 25
    CURRENT_ADDRESS = 26
    HOST_FUNC_ID = 27
    NEW_HOST_FUNC = 28
    CALL_THIS = 29
    HEAP_INFO = 30
    HEAP_OFFSET = 31
    VALUE_AT_OFFSET = 32


class Field:
    """``mvx_layout(index)`` indexes (MVX_L_<name>).

    STATE, ROM and PAGE are addresses; the fields of the glue's state are
    offsets from STATE; the rest are sizes, limits and the engine version.
    """

    STATE = 0
    HANDLES = 1  # pointer field: where this restore's handle slots start
    ROM = 2
    SCRATCH = 3  # pointer field: where strings, bytes and snapshots pass through
    PAGE = 4
    ARGS = 5
    THIS = 6
    RESULT = 7
    CALLBACK = 8
    OUT_SIZE = 9
    FATAL = 10
    IMPORT_COUNT = 11
    MISSING_IMPORT = 12
    IMPORTS = 13
    STATS = 14
    HANDLE_SIZE = 15
    MAX_HANDLES = 16
    MAX_ARGS = 17
    MAX_IMPORTS = 18
    SCRATCH_SIZE = 19
    ROM_SIZE = 20
    SIZE_T = 21
    VERSION = 22  # major << 8 | minor
    COOKIE = 23
    F64 = 24
    STATE_SIZE = 25
    LOW_END = 26
    TOP_START = 27
    HANDLES_LINKED = 28
    CALL_INFO = 29
    VM_PTR = 30
    GAS_OFFSET = 31  # of the instruction counter in the engine's VM struct


class PromiseState:
    """What ``mvx_promise_state`` returns (MVX_PROMISE_<name>); a settled value is left in mvx.result."""

    NONE = 0  # not a promise
    PENDING = 1
    FULFILLED = 2
    REJECTED = 3


PROMISE_STATE_NAMES = {PromiseState.PENDING: "pending", PromiseState.FULFILLED: "fulfilled",
                       PromiseState.REJECTED: "rejected"}


class HeapInfo:
    """What ``mvx_heap_info(what)`` reports about the RAM page allocator (MVX_HEAP_<name>)."""

    FREE_BYTES = 0
    LARGEST_FREE = 1
    USED_BLOCKS = 2


C_TABLES: dict[str, type] = {"OP": Op, "L": Field, "PROMISE": PromiseState, "HEAP": HeapInfo}
"""Prefix in the generated C header -> table: ``Op.GET`` is ``MVX_OP_GET``."""


def constants(table: type) -> dict[str, int]:
    """The NAME -> int entries of one of the tables above."""
    return {name: value for name, value in vars(table).items() if name.isupper() and isinstance(value, int)}


# ---- engine values the host reads without calling in (microvium.c, microvium.h) ----

UNDEFINED = 0x01
NULL = 0x05
TRUE = 0x09
FALSE = 0x0D
NAN = 0x11
NEG_ZERO = 0x15
STR_LENGTH = 0x1D  # the engine's own "length" string
STR_PROTO = 0x21  # the engine's own "__proto__" string
NO_OP_FUNC = 0x25  # a continuation that ignores its result

# mvm_TeType
T_UNDEFINED, T_NULL, T_BOOLEAN, T_NUMBER, T_STRING, T_FUNCTION = 0, 1, 2, 3, 4, 5
T_OBJECT, T_ARRAY, T_UINT8_ARRAY, T_CLASS, T_SYMBOL, T_BIG_INT = 6, 7, 8, 9, 10, 11
TYPE_NAMES = ("undefined", "null", "boolean", "number", "string", "function", "object", "array", "Uint8Array",
              "class", "symbol", "bigint")

# int14: small integers are the value itself, ((n << 2) | 3) & 0xFFFF; hot paths inline these.
INT14_MIN = -0x2000
INT14_MAX = 0x1FFF
INT14_TAG = 3
INT14_SIGN = 0x8000
INT14_BIAS = 0x4000

MAX_ALLOCATION = 0xFFF
"""The engine's largest allocation, in bytes; larger ones are fatal."""
MAX_STRING_BYTES = MAX_ALLOCATION - 1  # strings carry a terminating NUL
MAX_HEAP = 0x7400
"""MVM_MAX_HEAP_SIZE: the guest heap's limit in bytes (29,696)."""

# A fatal error's mvx.fatal_code: the mvm_TeError in bits 0-7, what the engine was
# doing in bits 8-9 (PHASE_GC, PHASE_SNAPSHOT or 0: running guest code), and the
# heap bytes in use when that began from bit 10 (the heap never exceeds 15 bits).
FATAL_CODE_MASK = 0xFF
FATAL_PHASE_SHIFT = LIMITS["FATAL_PHASE_SHIFT"]
FATAL_HEAP_SHIFT = LIMITS["FATAL_HEAP_SHIFT"]
PHASE_GC = LIMITS["PHASE_GC"]
PHASE_SNAPSHOT = LIMITS["PHASE_SNAPSHOT"]
MAX_ARRAY_ITEMS = MAX_ALLOCATION // 2

# Bytecode header (mvm_TsBytecodeHeader): version bytes, then section offsets from byte 12.
SNAPSHOT_HEADER_SIZE = 28
SNAPSHOT_VERSION_AT = 0  # bytecodeVersion, the engine major version
SNAPSHOT_MINOR_AT = 2  # requiredEngineVersion, the minor version
SNAPSHOT_SECTIONS_AT = 12
SECTION_EXPORT_TABLE = 1  # entries of (id, value), 4 bytes each
EXPORT_ENTRY_SIZE = 4
SECTION_HEAP = 7  # the last section: the heap runs from its offset to the end of the snapshot
SNAPSHOT_HEAP_AT = SNAPSHOT_SECTIONS_AT + 2 * SECTION_HEAP

ENGINE_FACTS = {
    "VM_VALUE_UNDEFINED": UNDEFINED,
    "VM_VALUE_NULL": NULL,
    "VM_VALUE_TRUE": TRUE,
    "VM_VALUE_FALSE": FALSE,
    "VM_VALUE_NAN": NAN,
    "VM_VALUE_NEG_ZERO": NEG_ZERO,
    "VM_VALUE_STR_LENGTH": STR_LENGTH,
    "VM_VALUE_STR_PROTO": STR_PROTO,
    "VM_VALUE_NO_OP_FUNC": NO_OP_FUNC,
    "VM_T_UNDEFINED": T_UNDEFINED,
    "VM_T_NULL": T_NULL,
    "VM_T_BOOLEAN": T_BOOLEAN,
    "VM_T_NUMBER": T_NUMBER,
    "VM_T_STRING": T_STRING,
    "VM_T_FUNCTION": T_FUNCTION,
    "VM_T_OBJECT": T_OBJECT,
    "VM_T_ARRAY": T_ARRAY,
    "VM_T_UINT8_ARRAY": T_UINT8_ARRAY,
    "VM_T_CLASS": T_CLASS,
    "VM_T_SYMBOL": T_SYMBOL,
    "VM_T_BIG_INT": T_BIG_INT,
    "VM_MIN_INT14": INT14_MIN,
    "VM_MAX_INT14": INT14_MAX,
    "VIRTUAL_INT14_ENCODE(-1)": ((-1 << 2) | INT14_TAG) & 0xFFFF,
    "MAX_ALLOCATION_SIZE": MAX_ALLOCATION,
    "MVM_MAX_HEAP_SIZE": MAX_HEAP,
    "sizeof(mvm_TsBytecodeHeader)": SNAPSHOT_HEADER_SIZE,
    "offsetof(mvm_TsBytecodeHeader, sectionOffsets)": SNAPSHOT_SECTIONS_AT,
    "offsetof(mvm_TsBytecodeHeader, requiredEngineVersion)": SNAPSHOT_MINOR_AT,
    "BCS_EXPORT_TABLE": SECTION_EXPORT_TABLE,
    "BCS_HEAP": SECTION_HEAP,
    "sizeof(vm_TsExportTableEntry)": EXPORT_ENTRY_SIZE,
    "sizeof(mvm_TsMemoryStats) / sizeof(size_t)": MEMORY_STATS_FIELDS,
}
"""C expression over the engine's definitions -> the value the host assumes (asserted at build time)."""


# ---- the table's digest, carried by the built wasm module ----

DIGEST_SECTION = b"mvactors.abi"
"""Name of the wasm custom section holding the ASCII :func:`digest` the module was built from."""


def digest() -> str:
    """A hash of everything above that the build compiles in or asserts: equal digests, equal ABIs."""
    tables = {prefix: sorted(constants(table).items()) for prefix, table in C_TABLES.items()}
    facts = (WASM_MEMORY_BYTES, sorted(LIMITS.items()), sorted(tables.items()), sorted(ENGINE_FACTS.items()))
    return hashlib.sha256(repr(facts).encode()).hexdigest()


def _leb128(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def with_digest(wasm: bytes, value: str) -> bytes:
    """``wasm`` with a custom section carrying ``value`` appended (custom sections may come last)."""
    body = _leb128(len(DIGEST_SECTION)) + DIGEST_SECTION + value.encode("ascii")
    return wasm + b"\0" + _leb128(len(body)) + body


def digest_in(wasm: bytes) -> str | None:
    """The digest a wasm module was built with, or None if it carries none (or is not a wasm module)."""

    def uleb(at: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            byte = wasm[at]
            value |= (byte & 0x7F) << shift
            at, shift = at + 1, shift + 7
            if byte < 0x80:
                return value, at

    if wasm[:4] != b"\0asm":
        return None
    at = 8  # magic and version
    try:
        while at < len(wasm):
            section_id = wasm[at]
            size, start = uleb(at + 1)
            at = start + size
            if section_id == 0:
                name_size, name_at = uleb(start)
                if wasm[name_at:name_at + name_size] == DIGEST_SECTION:
                    return wasm[name_at + name_size:at].decode("ascii", "replace")
    except IndexError:  # truncated: the module itself will not load either
        return None
    return None

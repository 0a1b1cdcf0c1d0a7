"""Exceptions raised by mvactors."""

from __future__ import annotations

from typing import Any

# mvm_TeError names by code (microvium.h, engine 8.0.0).
ERROR_NAMES: tuple[str, ...] = (
    "MVM_E_SUCCESS",  # 0
    "MVM_E_UNEXPECTED",  # 1
    "MVM_E_MALLOC_FAIL",  # 2
    "MVM_E_ALLOCATION_TOO_LARGE",  # 3
    "MVM_E_INVALID_ADDRESS",  # 4
    "MVM_E_COPY_ACROSS_BUCKET_BOUNDARY",  # 5
    "MVM_E_FUNCTION_NOT_FOUND",  # 6
    "MVM_E_INVALID_HANDLE",  # 7
    "MVM_E_STACK_OVERFLOW",  # 8
    "MVM_E_UNRESOLVED_IMPORT",  # 9
    "MVM_E_ATTEMPT_TO_WRITE_TO_ROM",  # 10
    "MVM_E_INVALID_ARGUMENTS",  # 11
    "MVM_E_TYPE_ERROR",  # 12
    "MVM_E_TARGET_NOT_CALLABLE",  # 13
    "MVM_E_HOST_ERROR",  # 14
    "MVM_E_NOT_IMPLEMENTED",  # 15
    "MVM_E_HOST_RETURNED_INVALID_VALUE",  # 16
    "MVM_E_ASSERTION_FAILED",  # 17
    "MVM_E_INVALID_BYTECODE",  # 18
    "MVM_E_UNRESOLVED_EXPORT",  # 19
    "MVM_E_RANGE_ERROR",  # 20
    "MVM_E_DETACHED_EPHEMERAL",  # 21
    "MVM_E_TARGET_IS_NOT_A_VM_FUNCTION",  # 22
    "MVM_E_FLOAT64",  # 23
    "MVM_E_NAN",  # 24
    "MVM_E_NEG_ZERO",  # 25
    "MVM_E_OPERATION_REQUIRES_FLOAT_SUPPORT",  # 26
    "MVM_E_BYTECODE_CRC_FAIL",  # 27
    "MVM_E_BYTECODE_REQUIRES_FLOAT_SUPPORT",  # 28
    "MVM_E_PROTO_IS_READONLY",  # 29
    "MVM_E_SNAPSHOT_TOO_LARGE",  # 30
    "MVM_E_MALLOC_MUST_RETURN_POINTER_TO_EVEN_BOUNDARY",  # 31
    "MVM_E_ARRAY_TOO_LONG",  # 32
    "MVM_E_OUT_OF_MEMORY",  # 33
    "MVM_E_TOO_MANY_ARGUMENTS",  # 34
    "MVM_E_REQUIRES_LATER_ENGINE",  # 35
    "MVM_E_PORT_FILE_VERSION_MISMATCH",  # 36
    "MVM_E_PORT_FILE_MACRO_TEST_FAILURE",  # 37
    "MVM_E_EXPECTED_POINTER_SIZE_TO_BE_16_BIT",  # 38
    "MVM_E_EXPECTED_POINTER_SIZE_NOT_TO_BE_16_BIT",  # 39
    "MVM_E_TYPE_ERROR_TARGET_IS_NOT_CALLABLE",  # 40
    "MVM_E_TDZ_ERROR",  # 41
    "MVM_E_MALLOC_NOT_WITHIN_RAM_PAGE",  # 42
    "MVM_E_INVALID_ARRAY_INDEX",  # 43
    "MVM_E_UNCAUGHT_EXCEPTION",  # 44
    "MVM_E_FATAL_ERROR_MUST_KILL_VM",  # 45
    "MVM_E_OBJECT_KEYS_ON_NON_OBJECT",  # 46
    "MVM_E_INVALID_UINT8_ARRAY_LENGTH",  # 47
    "MVM_E_CAN_ONLY_ASSIGN_BYTES_TO_UINT8_ARRAY",  # 48
    "MVM_E_WRONG_BYTECODE_VERSION",  # 49
    "MVM_E_USING_NEW_ON_NON_CLASS",  # 50
    "MVM_E_INSTRUCTION_COUNT_REACHED",  # 51
    "MVM_E_REQUIRES_ACTIVE_VM",  # 52
    "MVM_E_ASYNC_START_ERROR",  # 53
    "MVM_E_ASYNC_WITHOUT_AWAIT",  # 54
    "MVM_E_TYPE_ERROR_AWAIT_NON_PROMISE",  # 55
    "MVM_E_HEAP_CORRUPT",  # 56
    "MVM_E_CLASS_PROTOTYPE_MUST_BE_NULL_OR_OBJECT",  # 57
)

E_HOST_ERROR = 14
E_UNRESOLVED_IMPORT = 9
E_UNCAUGHT_EXCEPTION = 44
E_INSTRUCTION_COUNT_REACHED = 51


def error_name(code: int) -> str:
    """The MVM_E_* name of an mvm_TeError code."""
    if 0 <= code < len(ERROR_NAMES):
        return ERROR_NAMES[code]
    return f"MVM_E_UNKNOWN_{code}"


class MicroviumError(Exception):
    """An error reported by the Microvium engine or by mvactors about a VM.

    ``code`` is the engine's error name, e.g. ``"MVM_E_TYPE_ERROR"``, and
    ``errno`` its number.
    """

    missing_import: int | None = None  # MVM_E_UNRESOLVED_IMPORT at restore: the import ID the map lacks

    def __init__(self, message: str, code: int | str = 1) -> None:
        super().__init__(message)
        if isinstance(code, str):
            self.code = code
            self.errno = ERROR_NAMES.index(code) if code in ERROR_NAMES else -1
        else:
            self.code = error_name(code)
            self.errno = code


class GuestError(MicroviumError):
    """The guest threw (or its promise rejected with) ``value``."""

    def __init__(self, value: Any) -> None:
        super().__init__(f"guest threw {describe(value)}", E_UNCAUGHT_EXCEPTION)
        self.value = value


class GasExhausted(MicroviumError):
    """The instruction budget set by ``stop_after_n_instructions`` ran out."""

    def __init__(self) -> None:
        super().__init__(
            "the VM's instruction budget ran out; call stop_after_n_instructions() to continue",
            E_INSTRUCTION_COUNT_REACHED,
        )


class VMUnusable(MicroviumError):
    """The VM hit a fatal engine error (or was closed) and cannot run again."""


class TimeLimitExceeded(VMUnusable):
    """The hard stop ended a call into the VM that ran longer than its ``time_limit``.

    Unlike :class:`GasExhausted`, the engine was stopped wherever it was, so
    the VM cannot run again (``rollback()`` to a savepoint revives it).
    """


class EngineExhausted(MicroviumError):
    """No further VM fits in this process: each live VM holds memory and address space.

    A property of the process, not of the snapshot: close or hibernate idle VMs
    (a service stops taking new ones) rather than treating the snapshot as bad.
    """


class HostFunctionError(MicroviumError):
    """A host (import) function raised; the original exception is ``__cause__``."""

    def __init__(self, import_id: int, exc: BaseException) -> None:
        super().__init__(f"host function {import_id} raised {type(exc).__name__}: {exc}", E_HOST_ERROR)
        self.import_id = import_id


class ExportNotFound(MicroviumError, KeyError):
    """The snapshot has no export with that ID."""

    def __str__(self) -> str:
        return str(self.args[0])


class CompileError(MicroviumError):
    """The Microvium compiler rejected a script."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "MVM_E_INVALID_BYTECODE")


def describe(value: Any) -> str:
    """A short human description of a guest value for error messages."""
    try:
        if hasattr(value, "to_python"):
            value = value.to_python()
        text = repr(value)
    except Exception:  # the VM may be unusable by now
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 200 else text[:197] + "..."


class _CausedError(MicroviumError):
    """An error of the floors above the engine: ``code`` names its cause, ``"MVA_*"`` (``errno`` is -1)."""

    default_code = "MVA_ERROR"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message, code or self.default_code)


# ---- floor 2: actors and their runtime ----


class ActorError(_CausedError):
    """An actor, or the runtime hosting it, refused a request or could not carry it out."""

    default_code = "MVA_ACTOR_ERROR"


class MailboxFull(ActorError):
    """The actor's mailbox is at capacity and the overflow policy is ``"raise"``."""

    default_code = "MVA_MAILBOX_FULL"


class ActorFailed(ActorError):
    """The actor hit a fatal error it could not roll back from; it takes no more messages."""

    default_code = "MVA_ACTOR_FAILED"


class ActorEvicted(ActorError):
    """The actor was evicted from this runtime (``Runtime.evict``) before it answered."""

    default_code = "MVA_ACTOR_EVICTED"


class ActorExists(ActorError):
    """An actor with this ID already runs in this runtime."""

    default_code = "MVA_ACTOR_EXISTS"


class RuntimeNotRunning(ActorError):
    """The runtime is not running (outside ``async with Runtime()``), or stopped before the actor answered."""

    default_code = "MVA_RUNTIME_NOT_RUNNING"


class Cancelled(ActorError):
    """The message was dropped before it ran (``client.cancel``, ``actor.cancel_paused()``)."""

    default_code = "MVA_CANCELLED"


class UpgradeFailed(ActorError):
    """An upgrade was not applied (the actor keeps its old code and state); the message says why."""

    default_code = "MVA_UPGRADE_FAILED"


class RecordCorrupt(ActorError):
    """Bytes given as an actor record are not one (truncated, garbage, or an unknown version)."""

    default_code = "MVA_RECORD_CORRUPT"


# ---- floor 3: the cluster ----


class ClusterError(_CausedError):
    """Base of the errors of the Redis-backed cluster (workers and clients)."""

    default_code = "MVA_CLUSTER_ERROR"

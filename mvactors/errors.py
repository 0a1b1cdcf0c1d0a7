"""Exceptions raised by mvactors."""

from __future__ import annotations

from typing import Any

# mvm_TeError names by code (microvium.h, engine 8.0.0).
ERROR_NAMES = (
    "MVM_E_SUCCESS MVM_E_UNEXPECTED MVM_E_MALLOC_FAIL MVM_E_ALLOCATION_TOO_LARGE MVM_E_INVALID_ADDRESS "
    "MVM_E_COPY_ACROSS_BUCKET_BOUNDARY MVM_E_FUNCTION_NOT_FOUND MVM_E_INVALID_HANDLE MVM_E_STACK_OVERFLOW "
    "MVM_E_UNRESOLVED_IMPORT MVM_E_ATTEMPT_TO_WRITE_TO_ROM MVM_E_INVALID_ARGUMENTS MVM_E_TYPE_ERROR "
    "MVM_E_TARGET_NOT_CALLABLE MVM_E_HOST_ERROR MVM_E_NOT_IMPLEMENTED MVM_E_HOST_RETURNED_INVALID_VALUE "
    "MVM_E_ASSERTION_FAILED MVM_E_INVALID_BYTECODE MVM_E_UNRESOLVED_EXPORT MVM_E_RANGE_ERROR "
    "MVM_E_DETACHED_EPHEMERAL MVM_E_TARGET_IS_NOT_A_VM_FUNCTION MVM_E_FLOAT64 MVM_E_NAN MVM_E_NEG_ZERO "
    "MVM_E_OPERATION_REQUIRES_FLOAT_SUPPORT MVM_E_BYTECODE_CRC_FAIL MVM_E_BYTECODE_REQUIRES_FLOAT_SUPPORT "
    "MVM_E_PROTO_IS_READONLY MVM_E_SNAPSHOT_TOO_LARGE MVM_E_MALLOC_MUST_RETURN_POINTER_TO_EVEN_BOUNDARY "
    "MVM_E_ARRAY_TOO_LONG MVM_E_OUT_OF_MEMORY MVM_E_TOO_MANY_ARGUMENTS MVM_E_REQUIRES_LATER_ENGINE "
    "MVM_E_PORT_FILE_VERSION_MISMATCH MVM_E_PORT_FILE_MACRO_TEST_FAILURE "
    "MVM_E_EXPECTED_POINTER_SIZE_TO_BE_16_BIT MVM_E_EXPECTED_POINTER_SIZE_NOT_TO_BE_16_BIT "
    "MVM_E_TYPE_ERROR_TARGET_IS_NOT_CALLABLE MVM_E_TDZ_ERROR MVM_E_MALLOC_NOT_WITHIN_RAM_PAGE "
    "MVM_E_INVALID_ARRAY_INDEX MVM_E_UNCAUGHT_EXCEPTION MVM_E_FATAL_ERROR_MUST_KILL_VM "
    "MVM_E_OBJECT_KEYS_ON_NON_OBJECT MVM_E_INVALID_UINT8_ARRAY_LENGTH MVM_E_CAN_ONLY_ASSIGN_BYTES_TO_UINT8_ARRAY "
    "MVM_E_WRONG_BYTECODE_VERSION MVM_E_USING_NEW_ON_NON_CLASS MVM_E_INSTRUCTION_COUNT_REACHED "
    "MVM_E_REQUIRES_ACTIVE_VM MVM_E_ASYNC_START_ERROR MVM_E_ASYNC_WITHOUT_AWAIT "
    "MVM_E_TYPE_ERROR_AWAIT_NON_PROMISE MVM_E_HEAP_CORRUPT MVM_E_CLASS_PROTOTYPE_MUST_BE_NULL_OR_OBJECT"
).split()

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

"""mvactors: Microvium snapshots as sandboxed VMs and actors in Python.

>>> import mvactors
>>> vm = mvactors.VM.restore(mvactors.compile("vmExport(1, (x) => x + 1);"))
>>> vm.exports[1](41)
42
"""

from .compiler import compile
from .errors import CompileError, GasExhausted, GuestError, MicroviumError, VMUnusable
from .values import (
    AsyncImport,
    GuestArray,
    GuestBytes,
    GuestClass,
    GuestFunction,
    GuestObject,
    GuestPromise,
    GuestRef,
    async_import,
    null,
)
from .vm import VM, ExportNotFound, HostFunctionError, MemoryStats

__version__ = "0.1.0"

__all__ = [
    "AsyncImport",
    "CompileError",
    "ExportNotFound",
    "GasExhausted",
    "GuestArray",
    "GuestBytes",
    "GuestClass",
    "GuestError",
    "GuestFunction",
    "GuestObject",
    "GuestPromise",
    "GuestRef",
    "HostFunctionError",
    "MemoryStats",
    "MicroviumError",
    "VM",
    "VMUnusable",
    "async_import",
    "compile",
    "null",
]

"""Calling guest functions: the hot-path GuestFunction class, and what a failed call raises.

:func:`call_error` is the VM's mapping of engine error codes to exceptions;
the native reference driver uses it too, so both report failures alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, NoReturn

from ..errors import (
    E_HOST_ERROR,
    E_INSTRUCTION_COUNT_REACHED,
    E_UNCAUGHT_EXCEPTION,
    GasExhausted,
    GuestError,
    HostFunctionError,
    MicroviumError,
    error_name,
)
from . import _wasm
from ._abi import (
    CALL_ARGC_SHIFT,
    CALL_GUARD,
    FALSE,
    INT14_BIAS,
    INT14_MAX,
    INT14_MIN,
    INT14_SIGN,
    INT14_TAG,
    MAX_HEAP,
    PHASE_GC,
    PHASE_SNAPSHOT,
    TRAPPED_BELOW,
    TRUE,
    UNDEFINED,
)
from .values import GuestFunction

if TYPE_CHECKING:
    from .machine import VM


_fastcall, CALL_PATH_REASON = _wasm.FASTCALL, _wasm.FASTCALL_REASON
CALL_PATH: Literal["c", "python"] = "python" if _fastcall is None else "c"
"""Which path makes the trivial guest call and host calls: ``"c"`` (the optional extension) or ``"python"``.

``MVACTORS_PURE=1`` in the environment forces the pure-Python path; ``CALL_PATH_REASON`` says why.
"""


def _raise_trapped(vm: VM, error: int | None) -> NoReturn:
    """The C call path's way out when a raw call trapped or was stopped: the Python path's exception."""
    raise vm._trapped(error)

_CALL_HINTS = {
    "MVM_E_TYPE_ERROR": "a guest operation was applied to a value of the wrong type",
    "MVM_E_TARGET_NOT_CALLABLE": "the value called is not a function",
    "MVM_E_STACK_OVERFLOW": "the guest stack overflowed (recursion too deep?)",
}


def call_error(err: int, thrown: Callable[[], Any], host_exception: tuple[int, BaseException] | None) -> MicroviumError:
    """The exception for a guest call that failed with mvm_TeError ``err``.

    ``thrown()`` reads the value the guest threw; ``host_exception`` is the
    (import ID, exception) of a host function that raised during the call.
    The host function's exception becomes the error's ``__cause__``.
    """
    if err == E_UNCAUGHT_EXCEPTION:
        return GuestError(thrown())
    if err == E_HOST_ERROR and host_exception is not None:
        import_id, exc = host_exception
        error = HostFunctionError(import_id, exc)
        error.__cause__ = exc
        return error
    if err == E_INSTRUCTION_COUNT_REACHED:
        return GasExhausted()
    name = error_name(err)
    return MicroviumError(f"{_CALL_HINTS.get(name, 'the guest call failed')} ({name})", err)


def fatal_reason(trap: _wasm.EngineTrap) -> str:
    """Why a VM died of ``trap``, in words a user can act on."""
    name = error_name(trap.fatal_code)
    if name == "MVM_E_ASYNC_WITHOUT_AWAIT":
        return ("an async host function was called from a script compiled without any `await`; "
                "the guest must await it (MVM_E_ASYNC_WITHOUT_AWAIT)")
    exhausted = (f"the guest ran out of memory ({name}); a VM heap is limited to about 29 KB "
                 "and property names stay interned for the VM's lifetime")
    if trap.fatal_code and trap.phase in (PHASE_GC, PHASE_SNAPSHOT):
        doing = "during garbage collection" if trap.phase == PHASE_GC else "while creating a snapshot"
        seen = f"{trap.heap_used:,} B of the {MAX_HEAP:,} B heap limit in use when it began"
        # The RAM page holds two heaps at the 29,696 B limit (the GC copies the live
        # heap once), so below 3/4 of the limit the copy always fits: a failure
        # there is the engine's, not exhaustion.
        if name in ("MVM_E_MALLOC_FAIL", "MVM_E_OUT_OF_MEMORY") and trap.heap_used * 4 >= MAX_HEAP * 3:
            return f"{exhausted} ({doing}, {seen})"
        return (f"the engine failed {doing} ({name}, {seen}); that is an engine fault, "
                "not the guest's doing: please report it with the snapshot")
    if name in ("MVM_E_MALLOC_FAIL", "MVM_E_OUT_OF_MEMORY"):  # no room left in the page for the GC to copy into
        return exhausted
    if trap.time_limit is not None:
        return (f"the hard stop ended a call that ran longer than the VM's time limit of {trap.time_limit:g} s "
                "(an endless loop in the guest, or a corrupt snapshot); see VM.restore(time_limit=)")
    if trap.fatal_code:
        return f"fatal engine error {name}"
    return f"the engine trapped: {trap}"


def fast_function_class(inst: _wasm.Instance) -> type[GuestFunction]:
    """A GuestFunction subclass whose ``__call__`` drives its VM's instance directly.

    The trivial call is the product's hot path: this closure does the whole
    call (argument encoding, one raw wasm call, int14 decoding) in one Python
    frame; anything unusual falls back to ``VM.call``.  It is built once per
    engine: the instance, its memory view and its export's address come from
    the VM (three slot reads: 1.00-1.003x of the per-instance class's call,
    interleaved), where one class per instance cost ~2.5 KiB of every live VM's
    resident memory (the class, its closure, its base's subclass registry).
    """
    engine = inst.engine
    cached = _function_classes.get(engine)
    if cached is not None:
        return cached
    call_raw, ctx, _faddr, raw, trap_addr, i32, trap_slot, entry = inst.raw_parts()
    layout = inst.layout
    arg0 = layout.args >> 1
    stride = layout.handle_size >> 1
    max_args = layout.max_args
    # The ABI's constants as closure cells: the body below inlines int14 encoding and decoding.
    guard, argc_shift, trapped_below = CALL_GUARD, CALL_ARGC_SHIFT, TRAPPED_BELOW
    small_min, small_end, tag, sign, bias = INT14_MIN, INT14_MAX + 1, INT14_TAG, INT14_SIGN, INT14_BIAS
    one_arg = guard | (1 << argc_shift)

    def __call__(self: GuestFunction, *args: Any) -> Any:
        vm: VM = self._heap  # type: ignore[assignment]  # only VMs make these; no cast() call on the hot path
        if vm._slow:  # also when the VM has no instance
            return vm.call(self._slot, args, None)
        mem16 = vm._mem16
        n = len(args)
        if n == 1:  # the common case, without the loop
            arg = args[0]
            if type(arg) is int and small_min <= arg < small_end:
                mem16[arg0] = ((arg << 2) | tag) & 0xFFFF
            else:
                mem16[arg0] = vm._to_guest(arg)
            i32[0] = one_arg | self._slot
        else:
            if n > max_args:
                return vm.call(self._slot, args, None)
            i = arg0
            for arg in args:
                if type(arg) is int and small_min <= arg < small_end:
                    mem16[i] = ((arg << 2) | tag) & 0xFFFF
                else:
                    mem16[i] = vm._to_guest(arg)
                i += stride
            i32[0] = guard | self._slot | (n << argc_shift)
        # A trap leaves the guard bit of the parameter in place, which no result
        # equals, so the trap output is read only on the slow path.  The hard stop
        # ends a call with an error instead, and the slot may hold what a raw call
        # made by a host function during this one left there: that is checked here.
        # The engine's entry names the instance running for the hard stop (see _wasm.Entry).
        instance = vm._inst
        outer = entry.current
        entry.current = instance
        try:
            error = call_raw(ctx, vm._call_address, raw, 1, trap_addr)
        finally:
            entry.current = outer
        if error:
            raise vm._trapped(error)
        r = i32[0]
        if r >= 0 and r & tag == tag:
            return (r >> 2) - bias if r & sign else r >> 2
        if r < trapped_below or trap_slot.value:
            raise vm._trapped()
        return vm._call_result(r)

    call: Any = __call__
    if _fastcall is not None:
        # The same call in C for int14, None and bool arguments and int14 results (see
        # _fastcall.c); everything else it hands to the closure above, with the same arguments.
        call = _fastcall.FastCall(
            fallback=__call__, raise_trapped=_raise_trapped, entry=entry, call_address=_wasm.raw_call_address(),
            ctx=ctx, raw=raw, trap=trap_addr, arg0=layout.args, stride=layout.handle_size, max_args=max_args,
            guard=guard, argc_shift=argc_shift, trapped_below=trapped_below, small_min=small_min,
            small_max=INT14_MAX, tag=tag, sign=sign, bias=bias, undefined=UNDEFINED, true_value=TRUE,
            false_value=FALSE)
    # ``_py_call`` keeps the pure-Python path reachable in-process (tests compare the two paths).
    cls = type("GuestFunction", (GuestFunction,), {"__slots__": (), "__call__": call, "_py_call": __call__,
                                                   "__module__": GuestFunction.__module__,
                                                   "__doc__": GuestFunction.__doc__})
    _function_classes[engine] = cls
    return cls


_function_classes: dict[_wasm.WasmEngine, type[GuestFunction]] = {}  # engine -> its fast GuestFunction class

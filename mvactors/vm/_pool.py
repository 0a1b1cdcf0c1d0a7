"""Engine instances of closed VMs, ready for the next restore.

Unbounded: instances share one wasmtime Store and cannot be freed one by one,
so the process keeps as many as were ever live at once and reuses them.
"""

from __future__ import annotations

from ..errors import EngineExhausted
from . import _wasm

# Idle instances of the engine with the hard stop ([True]) and without it ([False]).
_idle: dict[bool, list[_wasm.Instance]] = {True: [], False: []}
# Instances closed while their guest code was still running (a host function closed
# its own VM): reusable only once that call has returned.
_busy: list[_wasm.Instance] = []


def take(stoppable: bool = True) -> _wasm.Instance:
    """An idle instance, or a new one, of the engine with (or without) the hard stop."""
    if _busy:
        for instance in list(_busy):
            if instance.dead or not instance.busy:
                _busy.remove(instance)
                if not instance.dead:
                    _idle[instance.stoppable].append(instance)
    idle = _idle[stoppable]
    if idle:
        return idle.pop()
    try:
        return _wasm.Instance(_wasm.WasmEngine.get(stoppable))
    except _wasm.EngineMissing:
        raise
    except Exception as exc:  # wasmtime reports exhaustion as a generic error
        raise EngineExhausted(f"cannot create another WebAssembly instance ({exc}); {_why_exhausted(stoppable)}",
                              "MVM_E_MALLOC_FAIL") from exc


def _why_exhausted(stoppable: bool) -> str:
    """What limits live instances, for the error that reports one more did not fit (see _wasm.WasmEngine)."""
    if not stoppable:
        return ("VMs restored with time_limit=None reserve 4 GiB of address space each, and x86-64 "
                "gives a process 128 TiB, about 32,000 of them, shared with the default engine: close or "
                "hibernate idle ones, or restore them with a time limit (384 KiB of address space each)")
    return ("each live VM reserves 384 KiB of address space and uses about 18 KiB of memory, so the "
            "process ran out of memory or hit a limit on it (RAM, `ulimit -v`, a cgroup's memory.max): "
            "close or hibernate idle VMs")


def give_back(instance: _wasm.Instance, may_be_running: bool = True) -> None:
    """Detach ``instance`` from its VM and keep it for reuse (unless a trap killed it).

    ``may_be_running=False`` when the VM is being finalized: it is not running (its
    host calls hold a reference to it), and at interpreter exit its instance's memory
    may be gone already, so it is not read.
    """
    instance.detach()
    if instance.dead:
        return
    (_busy if may_be_running and instance.busy else _idle[instance.stoppable]).append(instance)


def clear() -> None:
    """Forget the idle instances (benchmarks use it to time brand-new instances)."""
    for idle in _idle.values():
        idle.clear()
    _busy.clear()

"""Inside mvactors/vm, code reads underscore attributes only of ``self``/``cls``, bar the exceptions named here.

``VM`` is one class split into mixins by concept (mvactors/vm/_state.py), so
``self._x`` in any of them is the class's own field.  Everything else that
reads ``something._x`` is listed below with its reason; a new one fails this
test, and so does an exception that is no longer used.
"""

from __future__ import annotations

import ast
from pathlib import Path

VM_DIR = Path(__file__).resolve().parents[2] / "mvactors" / "vm"

EXCEPTIONS: dict[str, set[str]] = {
    # The trivial call's hot path: a GuestFunction subclass whose __call__ reads its VM's flat
    # fields.  A public method in between would cost ~0.1 µs of the ~1.7 µs call (bench/vm.py).
    # Its instance, memory view and export address too: one class per engine, not per instance (~2.5 KiB/VM).
    # The C version of that call (_fastcall.c, invisible to this check) reads fn._heap, fn._slot,
    # vm._slow, vm._inst, vm._base and vm._call_address, and calls vm._call_result and vm._trapped;
    # its host-call dispatch reads vm._imports and vm._inst, sets vm._host_exception as
    # on_host_call does, and calls vm._host_returned.
    "_calls.py": {"vm._slow", "vm._to_guest", "vm._trapped", "vm._call_result", "vm._inst", "vm._mem16",
                  "vm._call_address"},
    # wasmtime-py's C bindings: the public call path costs 10-48 µs per call.  _wasm is the only
    # module that imports wasmtime.  (WasmEngine._next_cookie is the class's own counter.)
    "_wasm.py": {"ffi._wasmtime_store_epoch_deadline_callback", "ffi._wasmtime_func_call_unchecked",
                 "store._context", "self.store._context", "wasmtime.WasmtimeError._from_ptr",
                 "wasmtime.Trap._from_ptr", "WasmEngine._next_cookie"},
    # VM.restore and VM.wake finish the VM they have just made (own class); Exports is the VM's
    # view in the same module (its resolver, and cut loose when the VM closes).
    "machine.py": {"vm._boot", "vm._wake_refs", "self._live_vm()._resolve_export", "self.exports._vm"},
    # The native driver's C callback reaches its one live NativeVM (own class, same module).
    "_native.py": {"NativeVM._live", "vm._host_call", "vm._host_exception"},
    # The proxies' module reads its own classes' fields (slot_of, slot_in and observe hand them out).
    "values.py": {"ref._slot", "ref._heap", "promise._observed", "other._heap", "other._slot"},
}


def private_reads(source: str) -> set[str]:
    """``x._name`` expressions (dunders aside) whose ``x`` is not ``self`` or ``cls``."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            found.add(ast.unparse(node))
    return found


def test_vm_modules_read_no_other_objects_privates() -> None:
    unexpected, unused = {}, {}
    for path in sorted(VM_DIR.glob("*.py")):
        reads = private_reads(path.read_text())
        allowed = EXCEPTIONS.get(path.name, set())
        if reads - allowed:
            unexpected[path.name] = sorted(reads - allowed)
        if allowed - reads:
            unused[path.name] = sorted(allowed - reads)
    assert not unexpected, f"private reads of another object (add a reason to EXCEPTIONS, or don't): {unexpected}"
    assert not unused, f"exceptions no longer used (remove them): {unused}"


def test_vm_modules_import_no_private_names() -> None:
    # Private modules of the package (_wasm, _abi, ...) are the package's to share; a private
    # name defined inside another module is that module's.
    found = []
    for path in sorted(VM_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level > 0 and node.module:
                found += [f"{path.name}:{node.lineno} {node.module}.{a.name}" for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")]
    assert not found


def test_the_checker_sees_what_it_should() -> None:
    assert private_reads("def f(vm):\n    return vm._inst, self._ok, cls._ok, x.__dict__") == {"vm._inst"}

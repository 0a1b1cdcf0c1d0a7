"""The only module that touches wasmtime: loads the built engine and runs instances.

wasmtime-py's public call path costs 10-48 µs per call, so instances are driven
through the C API directly: unchecked calls over a preallocated raw value
array, host imports defined once on a Linker with unchecked callbacks, and
instantiation through a pre-linked ``InstancePre``.  Each instance holds one
Microvium VM; the host reads and writes the glue's statics in linear memory
through ctypes views on the (never moving) memory base.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import wasmtime
from wasmtime import _bindings as ffi
from wasmtime import _ffi

ENGINE_DIR = Path(__file__).resolve().parent / "_engine"
WASM_PATH = ENGINE_DIR / "mvx.wasm"
NATIVE_PATH = ENGINE_DIR / "libmvx_native.so"

BUILD_HINT = "build it with `python engine/build.py` from the mvactors source tree"

# mvx_layout() indexes (see engine/src/glue.c).
_L_STATE, _L_HANDLES, _L_ROM, _L_SCRATCH, _L_PAGE = 0, 1, 2, 3, 4
_L_ARGS, _L_THIS, _L_RESULT, _L_CALLBACK, _L_OUT_SIZE, _L_FATAL = 5, 6, 7, 8, 9, 10
_L_IMPORT_COUNT, _L_MISSING_IMPORT, _L_IMPORTS, _L_STATS = 11, 12, 13, 14
_L_HANDLE_SIZE, _L_MAX_HANDLES, _L_MAX_ARGS, _L_MAX_IMPORTS = 15, 16, 17, 18
_L_SCRATCH_SIZE, _L_ROM_SIZE, _L_SIZE_T, _L_VERSION, _L_COOKIE, _L_F64 = 19, 20, 21, 22, 23, 24

HostCall = Callable[[int, int, int, int, bool], int]
"""(import id, args address, argc, result address, is_async) -> mvm_TeError."""
BreakpointHook = Callable[[int], None]


class EngineTrap(Exception):
    """The engine trapped: a Microvium fatal error or a WebAssembly trap.

    ``fatal_code`` is the mvm_TeError passed to MVM_FATAL_ERROR, or 0 when the
    trap did not come from the engine's fatal path.
    """

    def __init__(self, fatal_code: int, message: str) -> None:
        super().__init__(message)
        self.fatal_code = fatal_code


class EngineMissing(RuntimeError):
    """The built engine module is not where mvactors looks for it."""


class Host(Protocol):
    """What an instance calls back into while the guest runs."""

    def on_host_call(self, import_id: int) -> int: ...

    def on_breakpoint(self, address: int) -> None: ...


class Layout:
    """Addresses and limits of the glue's host-visible statics (same for every instance)."""

    def __init__(self, layout: Callable[[int], int]) -> None:
        state = layout(_L_STATE)
        # Per-restore positions, read after each restore: host handle slots follow the
        # import table, which follows the snapshot at the start of `rom`.
        self.handles_ptr = state + layout(_L_HANDLES)
        self.rom = layout(_L_ROM)
        self.scratch_ptr = state + layout(_L_SCRATCH)
        self.page = layout(_L_PAGE)
        self.args = state + layout(_L_ARGS)
        self.this_value = state + layout(_L_THIS)
        self.result = state + layout(_L_RESULT)
        self.callback = state + layout(_L_CALLBACK)
        self.out_size = state + layout(_L_OUT_SIZE)
        self.fatal_code = state + layout(_L_FATAL)
        self.import_count = state + layout(_L_IMPORT_COUNT)
        self.missing_import = state + layout(_L_MISSING_IMPORT)
        self.stats = state + layout(_L_STATS)
        self.cookie = state + layout(_L_COOKIE)
        self.f64 = state + layout(_L_F64)
        self.state = state
        self.state_size = layout(25)
        self.low_end = state + layout(26)
        self.top_start = state + layout(27)
        self.call_info = state + layout(29)
        self.vm_ptr = state + layout(30)
        self.gas_offset = layout(31)  # of the instruction counter in the engine's VM struct
        self.handle_size = layout(_L_HANDLE_SIZE)
        self.max_handles = layout(_L_MAX_HANDLES)
        self.max_args = layout(_L_MAX_ARGS)
        self.max_imports = layout(_L_MAX_IMPORTS)
        self.scratch_size = layout(_L_SCRATCH_SIZE)
        self.rom_size = layout(_L_ROM_SIZE)
        version = layout(_L_VERSION)
        self.engine_version = f"{version >> 8}.{version & 0xFF}.0"

    def word(self, field: int) -> int:
        """Index into Instance.state32 of the state field at address ``field``."""
        return (field - self.state) // 4


# ---- C semantics for the libm functions the wasm build imports ----


def c_fmod(x: float, y: float) -> float:
    try:
        return math.fmod(x, y)
    except ValueError:  # x infinite or y zero: C returns NaN
        return math.nan


def c_pow(x: float, y: float) -> float:
    try:
        return math.pow(x, y)
    except OverflowError:
        negative = x < 0 and y == math.floor(y) and math.fmod(y, 2.0) != 0
        return -math.inf if negative else math.inf
    except ValueError:
        if x == 0:  # pole error: 0 ** negative
            odd = y == math.floor(y) and math.fmod(y, 2.0) != 0
            return math.copysign(math.inf, x) if odd else math.inf
        return math.nan


# ---- the WebAssembly engine ----

_UNCHECKED_CB = ffi.wasmtime_func_unchecked_callback_t
_ADDRESS_CB = ctypes.CFUNCTYPE(ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
_FINALIZER = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_RAW_CALL = ctypes.CFUNCTYPE(
    ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p
)
_RAW_SLOT = 16  # bytes per wasmtime_val_raw_t


def _raw_call_fn() -> Callable[..., int | None]:
    # The binding's own restype builds a POINTER object per call; a c_void_p
    # prototype returns a plain int (or None), which is cheaper to test.
    address = ctypes.cast(ffi._wasmtime_func_call_unchecked, ctypes.c_void_p).value
    assert address is not None
    return _RAW_CALL(address)  # type: ignore[no-any-return]


class WasmEngine:
    """The compiled engine module, linked once per process."""

    _instance: WasmEngine | None = None

    def __init__(self) -> None:
        if not WASM_PATH.exists():
            raise EngineMissing(f"the Microvium engine is not built ({WASM_PATH} is missing); {BUILD_HINT}")
        config = wasmtime.Config()
        # Copy-on-write memory images cost two extra kernel mappings per instance, and
        # the live-instance ceiling is vm.max_map_count (65530): 4 mappings per
        # instance allow ~16,000 VMs, 2 allow ~32,000.  The engine's data is a few KB,
        # so copying it at instantiation costs nothing measurable.
        config.memory_init_cow = False
        self.engine = wasmtime.Engine(config)
        self.module = wasmtime.Module(self.engine, WASM_PATH.read_bytes())
        self.linker = wasmtime.Linker(self.engine)
        self.hosts: dict[int, Host] = {}
        self.bases: dict[int, int] = {}  # cookie -> linear memory base
        self._next_cookie = 1
        self._callbacks: list[Any] = []  # keep ctypes callbacks alive
        self._define_imports()
        self.pre = self.linker.instantiate_pre(self.module)
        self.store = wasmtime.Store(self.engine)
        # The default caps (10,000 instances and memories per store) are below what a
        # fleet needs; the real ceiling is the kernel's mapping limit.
        self.store.set_limits(instances=10_000_000, memories=10_000_000, tables=10_000_000)
        self.ctx = self.store._context()
        self.call_raw = _raw_call_fn()
        self.layout: Layout | None = None

    @classmethod
    def get(cls) -> WasmEngine:
        """The process-wide engine (wasmtime types must not cross engines)."""
        if cls._instance is None:
            cls._instance = WasmEngine()
        return cls._instance

    def new_cookie(self, base: int) -> int:
        """A number identifying a new instance in host calls (16 bits: instances are mapping-limited)."""
        cookie = self._next_cookie
        if cookie > 0xFFFF:
            raise RuntimeError("too many engine instances for one process (65,535)")
        self._next_cookie += 1
        self.bases[cookie] = base
        return cookie

    def _define(self, name: str, params: list[wasmtime.ValType], results: list[wasmtime.ValType], fn: Any,
                raw_address: bool = False) -> None:
        functype = wasmtime.FuncType(params, results)
        if raw_address:
            # Receiving the raw buffer as a plain address avoids building a ctypes
            # pointer object on every call.
            own = _ADDRESS_CB(fn)
            self._callbacks.append(own)
            callback = ctypes.cast(own, _UNCHECKED_CB)
        else:
            callback = _UNCHECKED_CB(fn)
        self._callbacks.append((functype, callback))
        module = b"mvh"
        error = ffi.wasmtime_linker_define_func_unchecked(
            self.linker.ptr(),
            ctypes.create_string_buffer(module),
            len(module),
            ctypes.create_string_buffer(name.encode()),
            len(name),
            functype.ptr(),
            callback,
            None,
            _FINALIZER(0),
        )
        if error:
            raise wasmtime.WasmtimeError._from_ptr(error)

    def _define_imports(self) -> None:
        i32, f64 = wasmtime.ValType.i32(), wasmtime.ValType.f64()
        hosts = self.hosts
        c_int32_p = ctypes.POINTER(ctypes.c_int32)
        c_double_p = ctypes.POINTER(ctypes.c_double)
        bases = self.bases

        views: dict[int, Any] = {}  # raw buffer address -> int32 view (a handful of addresses recur)

        def call(_env: Any, _caller: Any, raw: int, _n: int) -> int:
            # The guest's details of the call are in the instance's memory; the raw
            # buffer carries only cookie << 16 | import id, and takes the result.
            view = views.get(raw)
            if view is None:
                view = views[raw] = ctypes.c_int32.from_address(raw)
            packed = view.value & 0xFFFFFFFF
            # Errors must not escape a ctypes callback (they would only be
            # printed); hosts catch everything and return a code.
            try:
                view.value = hosts[packed >> 16].on_host_call(packed & 0xFFFF)
            except BaseException:  # pragma: no cover - hosts already catch
                view.value = 14  # MVM_E_HOST_ERROR
            return 0

        def breakpoint(_env: Any, _caller: Any, raw: Any, _n: int) -> int:
            p = ctypes.cast(raw, c_int32_p)
            try:
                hosts[p[0]].on_breakpoint(p[4])
            except BaseException:  # pragma: no cover - hosts already catch
                pass
            return 0

        def fmod(_env: Any, _caller: Any, raw: Any, _n: int) -> int:
            d = ctypes.cast(raw, c_double_p)
            d[0] = c_fmod(d[0], d[2])
            return 0

        def pow_(_env: Any, _caller: Any, raw: Any, _n: int) -> int:
            d = ctypes.cast(raw, c_double_p)
            d[0] = c_pow(d[0], d[2])
            return 0

        def format_double(_env: Any, _caller: Any, raw: Any, _n: int) -> int:
            d = ctypes.cast(raw, c_double_p)
            p = ctypes.cast(raw, c_int32_p)
            text = format(d[2], ".15g").encode()
            ctypes.memmove(bases[p[0]] + (p[8] & 0xFFFFFFFF), text, len(text))
            p[0] = len(text)
            return 0

        self._define("call", [i32], [i32], call, raw_address=True)
        self._define("breakpoint", [i32, i32], [], breakpoint)
        self._define("fmod", [f64, f64], [f64], fmod)
        self._define("pow", [f64, f64], [f64], pow_)
        self._define("format_double", [i32, f64, i32], [i32], format_double)


# Glue operations reached through the mvx_op dispatcher: name -> (op number, parameter count).
# The op numbers are the host ABI of engine/src/glue.c.
_OPS: dict[str, tuple[int, int]] = {
    "layout": (0, 1),
    "restore": (1, 2),
    "free_vm": (2, 0),
    "link_handles": (3, 1),
    "export": (4, 1),
    "get": (5, 2),
    "set": (6, 3),
    "keys": (7, 1),
    "new_number": (8, -1),  # float parameter, via mvx.f64
    "new_string": (9, 1),
    "new_bytes": (10, 1),
    "new_array": (11, 1),
    "new_object": (12, 0),
    "type_of": (13, 1),
    "to_number": (14, -2),  # float result, via mvx.f64
    "equal": (15, 2),
    "string": (16, 1),
    "bytes": (17, 1),
    "promise_state": (18, 1),
    "snapshot": (19, 0),
    "gc": (20, 1),
    "memory_stats": (21, 0),
    "set_breakpoint": (24, 1),
    "remove_breakpoint": (25, 1),
    "current_address": (26, 0),
    "host_func_id": (27, 1),
    "new_host_func": (28, 1),
    "call_this": (29, 1),
    "heap_info": (30, 1),
    "heap_offset": (31, 1),
    "value_at_offset": (32, 1),
}
_DIRECT = ("call", "noop")  # exported on their own: the hot call and the benchmark floor

# Parameters and results of every raw call go through one process-wide buffer:
# a nested call (guest -> host -> another instance) finishes before the outer
# call's results are written, so sharing is safe, and it saves per-instance setup.
_RAW = (ctypes.c_byte * (_RAW_SLOT * 8))()
_RAW_I32 = (ctypes.c_int32 * (4 * 8)).from_buffer(_RAW)
_RAW_F64 = (ctypes.c_double * (2 * 8)).from_buffer(_RAW)
_RAW_ADDR = ctypes.addressof(_RAW)
_TRAP = ctypes.c_void_p()
_TRAP_ADDR = ctypes.addressof(_TRAP)


class Instance:
    """One instantiated engine module: linear memory plus the glue's functions.

    Glue functions appear as attributes (``inst.call``, ``inst.get``, ...):
    closures doing raw calls, bound on first use and kept, so a fresh
    instance pays only for what its VM uses.  Each returns the wasm result as
    a Python int (or float).  A trap raises EngineTrap and marks the instance
    dead.
    """

    layout: Layout

    def __init__(self, engine: WasmEngine | None = None) -> None:
        self.engine = engine = engine or WasmEngine.get()
        # All instances share one Store: a Store costs ~3 KB and a few µs, and
        # instances are pooled for reuse rather than freed (see mvactors.vm).
        self.store = engine.store
        ctx = engine.ctx
        self._ctx = ctx
        self._ctx_addr = ctypes.cast(ctx, ctypes.c_void_p).value
        instance = ffi.wasmtime_instance_t()
        trap = ctypes.POINTER(ffi.wasm_trap_t)()
        error = ffi.wasmtime_instance_pre_instantiate(engine.pre.ptr(), ctx, ctypes.byref(instance), ctypes.byref(trap))
        if error:
            raise wasmtime.WasmtimeError._from_ptr(error)
        if trap:
            raise wasmtime.Trap._from_ptr(trap)
        self._instance = instance
        self._funcs: list[Any] = []  # keeps the func structs whose addresses closures use
        self._op_addr: int | None = None
        memory = self._export("memory")
        base = ffi.wasmtime_memory_data(ctx, ctypes.byref(memory))
        self.base: int = ctypes.cast(base, ctypes.c_void_p).value or 0
        self.dead = False
        self.fatal: EngineTrap | None = None
        if engine.layout is None:
            engine.layout = Layout(self.layout_fn)
        self.layout = engine.layout
        self.cookie = engine.new_cookie(self.base)
        ctypes.c_uint32.from_address(self.base + self.layout.cookie).value = self.cookie
        # The details of a host call in progress: arguments address, count, result address, async flag.
        self.call_info = (ctypes.c_uint32 * 4).from_address(self.base + self.layout.call_info)
        # The glue's state as 32-bit words (index with Layout.word(field address)): a view made
        # once instead of a ctypes object per read.
        self.state32 = (ctypes.c_uint32 * (self.layout.state_size // 4)).from_address(self.base + self.layout.state)

    def _export(self, name: str) -> Any:
        item = ffi.wasmtime_extern_t()
        encoded = name.encode()
        found = ffi.wasmtime_instance_export_get(
            self._ctx, ctypes.byref(self._instance), encoded, len(encoded), ctypes.byref(item)
        )
        if not found:
            raise EngineMissing(f"engine module lacks export {name!r}; {BUILD_HINT}")
        if int(item.kind) == _ffi.WASMTIME_EXTERN_MEMORY.value:
            return item.of.memory
        func = ffi.wasmtime_func_t()
        ctypes.pointer(func)[0] = item.of.func
        self._funcs.append(func)
        return func

    def raw_parts(self, name: str) -> tuple[Any, ...]:
        """What a caller needs to call a directly exported glue function inline (hot paths)."""
        assert name in _DIRECT
        func = self._export("mvx_" + name)
        return (self.engine.call_raw, self._ctx_addr, ctypes.addressof(func), _RAW_ADDR, _TRAP_ADDR, _RAW_I32, _TRAP)

    @property
    def layout_fn(self) -> Callable[[int], int]:
        return self._bind("layout")

    def __getattr__(self, name: str) -> Any:
        if name not in _OPS and name not in _DIRECT:
            raise AttributeError(name)
        fn = self._bind(name)
        setattr(self, name, fn)
        return fn

    def _bind(self, name: str) -> Callable[..., Any]:
        call_raw = self.engine.call_raw
        ctx_addr = self._ctx_addr
        raw_addr, trap_addr, i32, trap_slot = _RAW_ADDR, _TRAP_ADDR, _RAW_I32, _TRAP
        fail = self._fail
        if name in _DIRECT:
            faddr = ctypes.addressof(self._export("mvx_" + name))

            def direct(a: int = 0) -> int:
                i32[0] = a
                if call_raw(ctx_addr, faddr, raw_addr, 1, trap_addr) or trap_slot.value:
                    fail()
                return i32[0]

            return direct
        if self._op_addr is None:
            self._op_addr = ctypes.addressof(self._export("mvx_op"))
        faddr = self._op_addr
        op, nargs = _OPS[name]
        if nargs == -1:
            f64 = ctypes.c_double.from_address(self.base + self.layout.f64)

            def float_in(x: float) -> int:
                f64.value = x
                i32[0] = op
                if call_raw(ctx_addr, faddr, raw_addr, 4, trap_addr) or trap_slot.value:
                    fail()
                return i32[0]

            return float_in
        if nargs == -2:
            f64 = ctypes.c_double.from_address(self.base + self.layout.f64)

            def float_out(a: int) -> float:
                i32[0] = op
                i32[4] = a
                if call_raw(ctx_addr, faddr, raw_addr, 4, trap_addr) or trap_slot.value:
                    fail()
                return f64.value

            return float_out

        def dispatch(a: int = 0, b: int = 0, c: int = 0) -> int:
            i32[0] = op
            i32[4] = a
            i32[8] = b
            i32[12] = c
            if call_raw(ctx_addr, faddr, raw_addr, 4, trap_addr) or trap_slot.value:
                fail()
            return i32[0]

        return dispatch

    def attach(self, host: Host) -> None:
        """Route this instance's host calls and breakpoints to ``host``."""
        self.engine.hosts[self.cookie] = host

    def detach(self) -> None:
        self.engine.hosts.pop(self.cookie, None)

    def _fail(self) -> None:
        trap_ptr = _TRAP.value
        _TRAP.value = None
        self.dead = True
        fatal = ctypes.c_int32.from_address(self.base + self.layout.fatal_code).value
        message = "WebAssembly trap"
        if trap_ptr:
            trap = wasmtime.Trap._from_ptr(ctypes.cast(trap_ptr, ctypes.POINTER(ffi.wasm_trap_t)))
            message = trap.message
        self.fatal = EngineTrap(fatal, message)
        raise self.fatal

    def close(self) -> None:
        self.detach()
        self.dead = True


def native_library_path() -> Path:
    """Path of the native reference build (for tests and bench)."""
    if not NATIVE_PATH.exists():
        raise EngineMissing(f"the native reference engine is not built ({NATIVE_PATH}); {BUILD_HINT}")
    return NATIVE_PATH


__all__ = [
    "BUILD_HINT",
    "EngineMissing",
    "EngineTrap",
    "Host",
    "Instance",
    "Layout",
    "WasmEngine",
    "c_fmod",
    "c_pow",
    "native_library_path",
]

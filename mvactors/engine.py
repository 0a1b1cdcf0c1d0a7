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
import os
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
_L_SCRATCH_SIZE, _L_ROM_SIZE, _L_SIZE_T, _L_VERSION, _L_COOKIE = 19, 20, 21, 22, 23

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

    def on_host_call(self, import_id: int, args: int, argc: int, result: int, is_async: bool) -> int: ...

    def on_breakpoint(self, address: int) -> None: ...


class Layout:
    """Addresses and limits of the glue's host-visible statics (same for every instance)."""

    def __init__(self, layout: Callable[[int], int]) -> None:
        state = layout(_L_STATE)
        self.handles = layout(_L_HANDLES)
        self.rom = layout(_L_ROM)
        self.scratch = layout(_L_SCRATCH)
        self.page = layout(_L_PAGE)
        self.args = state + layout(_L_ARGS)
        self.this_value = state + layout(_L_THIS)
        self.result = state + layout(_L_RESULT)
        self.callback = state + layout(_L_CALLBACK)
        self.out_size = state + layout(_L_OUT_SIZE)
        self.fatal_code = state + layout(_L_FATAL)
        self.import_count = state + layout(_L_IMPORT_COUNT)
        self.missing_import = state + layout(_L_MISSING_IMPORT)
        self.imports = state + layout(_L_IMPORTS)
        self.stats = state + layout(_L_STATS)
        self.cookie = state + layout(_L_COOKIE)
        self.handle_size = layout(_L_HANDLE_SIZE)
        self.max_handles = layout(_L_MAX_HANDLES)
        self.max_args = layout(_L_MAX_ARGS)
        self.max_imports = layout(_L_MAX_IMPORTS)
        self.scratch_size = layout(_L_SCRATCH_SIZE)
        self.rom_size = layout(_L_ROM_SIZE)
        self.size_t = layout(_L_SIZE_T)
        version = layout(_L_VERSION)
        self.engine_version = f"{version >> 8}.{version & 0xFF}.0"


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
        self.engine = wasmtime.Engine(wasmtime.Config())
        self.module = wasmtime.Module(self.engine, WASM_PATH.read_bytes())
        self.linker = wasmtime.Linker(self.engine)
        self.hosts: dict[int, Host] = {}
        self.bases: dict[int, int] = {}  # cookie -> linear memory base
        self._next_cookie = 1
        self._callbacks: list[Any] = []  # keep ctypes callbacks alive
        self._define_imports()
        self.pre = self.linker.instantiate_pre(self.module)
        self.call_raw = _raw_call_fn()
        self.layout: Layout | None = None

    @classmethod
    def get(cls) -> WasmEngine:
        """The process-wide engine (wasmtime types must not cross engines)."""
        if cls._instance is None:
            cls._instance = WasmEngine()
        return cls._instance

    def register(self, host: Host, base: int) -> int:
        cookie = self._next_cookie
        self._next_cookie += 1
        self.hosts[cookie] = host
        self.bases[cookie] = base
        return cookie

    def unregister(self, cookie: int) -> None:
        self.hosts.pop(cookie, None)
        self.bases.pop(cookie, None)

    def _define(self, name: str, params: list[wasmtime.ValType], results: list[wasmtime.ValType], fn: Any) -> None:
        functype = wasmtime.FuncType(params, results)
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

        def call(_env: Any, _caller: Any, raw: Any, _n: int) -> int:
            # Errors must not escape a ctypes callback (they would only be
            # printed); host objects catch everything and return a code.
            p = ctypes.cast(raw, c_int32_p)
            try:
                host = hosts[p[0]]
                code = host.on_host_call(p[4], p[8] & 0xFFFFFFFF, p[12], p[16] & 0xFFFFFFFF, p[20] != 0)
            except BaseException:  # pragma: no cover - hosts already catch
                code = 14  # MVM_E_HOST_ERROR
            p[0] = code
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

        self._define("call", [i32] * 6, [i32], call)
        self._define("breakpoint", [i32, i32], [], breakpoint)
        self._define("fmod", [f64, f64], [f64], fmod)
        self._define("pow", [f64, f64], [f64], pow_)
        self._define("format_double", [i32, f64, i32], [i32], format_double)


class Instance:
    """One instantiated engine module: linear memory plus the glue's functions.

    Function attributes (``call``, ``get``, ...) are bound closures doing raw
    calls; each returns the wasm result as a Python int (or float).  A trap
    raises EngineTrap and leaves the instance unusable.
    """

    def __init__(self, engine: WasmEngine | None = None) -> None:
        self.engine = engine = engine or WasmEngine.get()
        self.store = wasmtime.Store(engine.engine)
        ctx = self.store._context()
        self._ctx = ctx
        instance = ffi.wasmtime_instance_t()
        trap = ctypes.POINTER(ffi.wasm_trap_t)()
        error = ffi.wasmtime_instance_pre_instantiate(engine.pre.ptr(), ctx, ctypes.byref(instance), ctypes.byref(trap))
        if error:
            raise wasmtime.WasmtimeError._from_ptr(error)
        if trap:
            raise wasmtime.Trap._from_ptr(trap)
        self._instance = instance
        item = ffi.wasmtime_extern_t()
        self._funcs: list[Any] = []

        def export(name: str) -> Any:
            encoded = name.encode()
            found = ffi.wasmtime_instance_export_get(
                ctx, ctypes.byref(instance), encoded, len(encoded), ctypes.byref(item)
            )
            if not found:
                raise EngineMissing(f"engine module lacks export {name!r}; {BUILD_HINT}")
            if int(item.kind) == _ffi.WASMTIME_EXTERN_MEMORY.value:
                return item.of.memory
            func = ffi.wasmtime_func_t()
            ctypes.pointer(func)[0] = item.of.func
            self._funcs.append(func)
            return func

        memory = export("memory")
        base = ffi.wasmtime_memory_data(ctx, ctypes.byref(memory))
        self.base: int = ctypes.cast(base, ctypes.c_void_p).value or 0
        self._raw = (ctypes.c_byte * (_RAW_SLOT * 8))()
        self._i32 = (ctypes.c_int32 * (4 * 8)).from_buffer(self._raw)
        self._f64 = (ctypes.c_double * (2 * 8)).from_buffer(self._raw)
        self._trap = ctypes.c_void_p()
        self.dead = False
        self.fatal: EngineTrap | None = None

        ctx_addr = ctypes.cast(ctx, ctypes.c_void_p).value
        raw_addr = ctypes.addressof(self._raw)
        trap_addr = ctypes.addressof(self._trap)
        call_raw = engine.call_raw
        i32 = self._i32
        f64 = self._f64
        trap_slot = self._trap
        fail = self._fail

        def bind(name: str, nargs: int, kinds: str = "") -> Callable[..., Any]:
            func = export(name)
            faddr = ctypes.addressof(func)
            n = max(nargs, 1)
            ret_f64 = kinds.endswith(">f")
            if nargs == 0:

                def f0() -> int:
                    if call_raw(ctx_addr, faddr, raw_addr, n, trap_addr) or trap_slot.value:
                        fail()
                    return i32[0]

                return f0
            if nargs == 1 and kinds.startswith("f"):

                def f1f(a: float) -> int:
                    f64[0] = a
                    if call_raw(ctx_addr, faddr, raw_addr, n, trap_addr) or trap_slot.value:
                        fail()
                    return i32[0]

                return f1f
            if nargs == 1 and ret_f64:

                def f1_f(a: int) -> float:
                    i32[0] = a
                    if call_raw(ctx_addr, faddr, raw_addr, n, trap_addr) or trap_slot.value:
                        fail()
                    return f64[0]

                return f1_f
            if nargs == 1:

                def f1(a: int) -> int:
                    i32[0] = a
                    if call_raw(ctx_addr, faddr, raw_addr, n, trap_addr) or trap_slot.value:
                        fail()
                    return i32[0]

                return f1
            if nargs == 2:

                def f2(a: int, b: int) -> int:
                    i32[0] = a
                    i32[4] = b
                    if call_raw(ctx_addr, faddr, raw_addr, n, trap_addr) or trap_slot.value:
                        fail()
                    return i32[0]

                return f2

            def f3(a: int, b: int, c: int) -> int:
                i32[0] = a
                i32[4] = b
                i32[8] = c
                if call_raw(ctx_addr, faddr, raw_addr, n, trap_addr) or trap_slot.value:
                    fail()
                return i32[0]

            return f3

        def raw_parts(name: str) -> tuple[Any, ...]:
            func = export(name)
            return (call_raw, ctx_addr, ctypes.addressof(func), raw_addr, trap_addr, i32, trap_slot)

        self.raw_parts = raw_parts
        self.layout_fn = bind("mvx_layout", 1)
        if engine.layout is None:
            engine.layout = Layout(self.layout_fn)
        self.layout = engine.layout
        self.restore = bind("mvx_restore", 2)
        self.free_vm = bind("mvx_free_vm", 0)
        self.link_handles = bind("mvx_link_handles", 1)
        self.call = bind("mvx_call", 1)
        self.call_this = bind("mvx_call_this", 1)
        self.export = bind("mvx_export", 1)
        self.get = bind("mvx_get", 2)
        self.set = bind("mvx_set", 3)
        self.keys = bind("mvx_keys", 1)
        self.new_number = bind("mvx_new_number", 1, "f>i")
        self.new_string = bind("mvx_new_string", 1)
        self.new_bytes = bind("mvx_new_bytes", 1)
        self.new_array = bind("mvx_new_array", 0)
        self.new_object = bind("mvx_new_object", 0)
        self.type_of = bind("mvx_type_of", 1)
        self.to_number = bind("mvx_to_number", 1, "i>f")
        self.equal = bind("mvx_equal", 2)
        self.string = bind("mvx_string", 1)
        self.bytes = bind("mvx_bytes", 1)
        self.promise_state = bind("mvx_promise_state", 1)
        self.snapshot = bind("mvx_snapshot", 0)
        self.gc = bind("mvx_gc", 1)
        self.memory_stats = bind("mvx_memory_stats", 0)
        self.set_gas = bind("mvx_set_gas", 1)
        self.get_gas = bind("mvx_get_gas", 0)
        self.set_breakpoint = bind("mvx_set_breakpoint", 1)
        self.remove_breakpoint = bind("mvx_remove_breakpoint", 1)
        self.current_address = bind("mvx_current_address", 0)
        self.noop = bind("mvx_noop", 0)
        self.host_func_id = bind("mvx_host_func_id", 1)
        self.new_host_func = bind("mvx_new_host_func", 1)
        self.cookie = 0

    def attach(self, host: Host) -> None:
        """Route this instance's host calls and breakpoints to ``host``."""
        self.detach()
        self.cookie = self.engine.register(host, self.base)
        ctypes.c_uint32.from_address(self.base + self.layout.cookie).value = self.cookie

    def detach(self) -> None:
        if self.cookie:
            self.engine.unregister(self.cookie)
            self.cookie = 0

    def _fail(self) -> None:
        trap_ptr = self._trap.value
        self._trap.value = None
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


def wasm_engine_available() -> bool:
    return WASM_PATH.exists()


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
    "wasm_engine_available",
]

if os.environ.get("MVACTORS_ENGINE_DEBUG"):  # pragma: no cover
    print("mvactors engine:", WASM_PATH)

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
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar, Literal, Protocol

import wasmtime
from wasmtime import _bindings as ffi
from wasmtime import _ffi

from ..errors import E_HOST_ERROR
from . import _abi
from ._abi import Field, Op


def _load_fastcall() -> tuple[ModuleType | None, str]:
    """The C call path's module (_fastcall.c), or None and why the pure-Python path is used."""
    if os.environ.get("MVACTORS_PURE", "") not in ("", "0"):
        return None, "MVACTORS_PURE is set"
    try:
        from . import _fastcall
    except ImportError as exc:  # no compiler at install time, or a build for another platform
        return None, (f"the C extension mvactors.vm._fastcall did not import ({exc}); reinstall mvactors "
                      "where a C compiler works (pip install --force-reinstall --no-binary mvactors mvactors) "
                      "for ~3x cheaper guest calls")
    return _fastcall, "the C extension mvactors.vm._fastcall is loaded"


FASTCALL, FASTCALL_REASON = _load_fastcall()
"""The C call path's module (the trivial guest call and the host-call dispatch), or None."""

ENGINE_DIR = Path(__file__).resolve().parent / "_engine"
WASM_PATH = ENGINE_DIR / "mvx.wasm"
NATIVE_PATH = ENGINE_DIR / "libmvx_native.so"

BUILD_HINT = "build it with `python engine/build.py` from the mvactors source tree"

HostCall = Callable[[int, int, int, int, bool], int]
"""(import id, args address, argc, result address, is_async) -> mvm_TeError."""
BreakpointHook = Callable[[int], None]


class EngineTrap(Exception):
    """The engine trapped: a Microvium fatal error or a WebAssembly trap.

    ``fatal_code`` is the mvm_TeError passed to MVM_FATAL_ERROR, or 0 when the
    trap did not come from the engine's fatal path.
    """

    def __init__(self, fatal_code: int, message: str, time_limit: float | None = None, phase: int = 0,
                 heap_used: int = 0) -> None:
        super().__init__(message)
        self.fatal_code = fatal_code
        self.time_limit = time_limit  # set when the hard stop ended a call that ran longer than this
        self.phase = phase  # _abi.PHASE_GC or PHASE_SNAPSHOT when the fatal error struck one, else 0
        self.heap_used = heap_used  # heap bytes in use when that phase began


class EngineMissing(RuntimeError):
    """The built engine module is not where mvactors looks for it, or was built from another ABI table."""


class Host(Protocol):
    """What an instance calls back into while the guest runs."""

    def on_host_call(self, import_id: int) -> int: ...

    def on_breakpoint(self, address: int) -> None: ...


class Layout:
    """Addresses and limits of the glue's host-visible statics (same for every instance)."""

    def __init__(self, layout: Callable[[int], int]) -> None:
        built = {name: layout(getattr(Field, name)) for name in ("MAX_HANDLES", "MAX_ARGS", "MAX_IMPORTS",
                                                                  "SCRATCH_SIZE", "ROM_SIZE")}
        expected = {name: getattr(_abi, name) for name in built}
        if built != expected:
            raise EngineMissing(f"the built engine does not match this mvactors (its limits are {built}, "
                                f"mvactors/vm/_abi.py says {expected}); rebuild it: {BUILD_HINT}")
        state = layout(Field.STATE)
        # Per-restore positions, read after each restore: host handle slots follow the
        # import table, which follows the snapshot at the start of `rom`.
        self.handles_ptr = state + layout(Field.HANDLES)
        self.rom = layout(Field.ROM)
        self.scratch_ptr = state + layout(Field.SCRATCH)
        self.page = layout(Field.PAGE)
        self.args = state + layout(Field.ARGS)
        self.this_value = state + layout(Field.THIS)
        self.result = state + layout(Field.RESULT)
        self.callback = state + layout(Field.CALLBACK)
        self.out_size = state + layout(Field.OUT_SIZE)
        self.fatal_code = state + layout(Field.FATAL)
        self.import_count = state + layout(Field.IMPORT_COUNT)
        self.missing_import = state + layout(Field.MISSING_IMPORT)
        self.stats = state + layout(Field.STATS)
        self.cookie = state + layout(Field.COOKIE)
        self.f64 = state + layout(Field.F64)
        self.state = state
        self.state_size = layout(Field.STATE_SIZE)
        self.low_end = state + layout(Field.LOW_END)
        self.top_start = state + layout(Field.TOP_START)
        self.call_info = state + layout(Field.CALL_INFO)
        self.vm_ptr = state + layout(Field.VM_PTR)
        self.gas_offset = layout(Field.GAS_OFFSET)  # of the instruction counter in the engine's VM struct
        self.handle_size = layout(Field.HANDLE_SIZE)
        self.max_handles = _abi.MAX_HANDLES
        self.max_args = _abi.MAX_ARGS
        self.max_imports = _abi.MAX_IMPORTS
        self.scratch_size = _abi.SCRATCH_SIZE
        self.rom_size = _abi.ROM_SIZE
        version = layout(Field.VERSION)
        self.engine_version = f"{version >> 8}.{version & 0xFF}.0"

        # Indexes into Instance.state32 of the fields the VM reads most.
        self.import_count_word = self.word(self.import_count)
        self.scratch_word = self.word(self.scratch_ptr)
        self.handles_word = self.word(self.handles_ptr)
        self.out_size_word = self.word(self.out_size)
        self.vm_word = self.word(self.vm_ptr)

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


def raw_call_address() -> int:
    """Address of ``wasmtime_func_call_unchecked`` in the library wasmtime-py loaded.

    The C call path (_fastcall.c) calls it through this address, so it links
    nothing and always matches the pinned wasmtime wheel.
    """
    address = ctypes.cast(ffi._wasmtime_func_call_unchecked, ctypes.c_void_p).value
    assert address is not None
    return address


def _raw_call_fn() -> Callable[..., int | None]:
    # The binding's own restype builds a POINTER object per call; a c_void_p
    # prototype returns a plain int (or None), which is cheaper to test.
    return _RAW_CALL(raw_call_address())  # type: ignore[no-any-return]


# ---- the hard stop: epoch interruption with a per-call time limit ----

TICK_SECONDS = 0.01
"""How often the ticker advances the engine's epoch: the hard stop's resolution."""
DEFAULT_TIME_LIMIT = 5.0
"""Seconds one entry into the engine may run before the hard stop ends it (``VM.restore(time_limit=)``)."""

_DEADLINE_CB = ffi._wasmtime_store_epoch_deadline_callback.argtypes[1]
_DEADLINE_FINALIZER = ffi._wasmtime_store_epoch_deadline_callback.argtypes[3]


class Entry:
    """Which instance's code runs now: every raw call sets it on entry and restores it on exit.

    The hard stop reads it to know whose time limit applies, and marks it
    (a ``Watch`` in place of the instance) to tell the call it is timing from
    a later one: any new entry writes a plain instance over the mark.  A
    nested call (guest -> host function -> another instance) puts back on exit
    what it found, mark included.  Three attribute operations on a slotted
    object cost ~25 ns per raw call (~1.5% of the trivial call).
    """

    __slots__ = ("current",)

    def __init__(self) -> None:
        self.current: Instance | Watch | None = None


class Watch:
    """The hard stop's mark on the entry it is timing (see Entry)."""

    __slots__ = ("instance",)

    def __init__(self, instance: Instance | None) -> None:
        self.instance = instance


class _HardStop:
    """Ends any entry into the engine that runs longer than its instance's time limit.

    A ticker thread advances the engine's epoch every TICK_SECONDS; compiled
    code checks the epoch at every loop back-edge and function entry, so even
    a loop inside the engine (a cyclic list in a corrupt snapshot) sees it.
    Each tick that finds wasm running calls ``on_tick`` on the running thread:
    the engine's ``Entry`` names the instance whose code runs (its time limit
    applies) and tells the call from a later one, and a call seen running for
    ``time_limit`` (time in host functions excluded) is ended with an error,
    which the caller sees as a trap of that instance.
    """

    def __init__(self, engine: wasmtime.Engine, store: wasmtime.Store, entry: Entry) -> None:
        self.engine = engine
        self.entry = entry
        # The mark put on the entry seen running at the last tick (None: none yet).  It holds the
        # instance only: holding the caller's frame would keep its locals (guest proxies, VMs)
        # alive after the call returned.
        self.watch: Watch | None = None
        self.call = 0  # how many calls the ticks have seen running
        self.ran = 0.0  # seconds that call has run in the engine, as the ticks saw it
        self.last = 0.0  # when the last tick saw it
        self.ticks = 0
        self.seen = 0  # the tick at which wasm was last seen running
        self.callback = _DEADLINE_CB(self.on_tick)
        ffi._wasmtime_store_epoch_deadline_callback(store.ptr(), self.callback, None, _DEADLINE_FINALIZER(0))
        ffi.wasmtime_context_set_epoch_deadline(store._context(), 1)
        self.start_ticker()
        os.register_at_fork(after_in_child=self.start_ticker)  # threads do not survive fork()

    def start_ticker(self) -> None:
        engine = self.engine

        def tick() -> None:
            while True:
                time.sleep(TICK_SECONDS)
                self.ticks += 1
                engine.increment_epoch()

        threading.Thread(target=tick, name="mvactors-epoch-ticker", daemon=True).start()

    def on_tick(self, _ctx: Any, _env: Any, delta: Any, kind: Any) -> int:
        delta[0] = 1
        kind[0] = 0  # WASMTIME_UPDATE_DEADLINE_CONTINUE
        try:
            now = time.monotonic()
            entry = self.entry
            current = entry.current
            # No wasm ran for two ticks (a host function ran, or the call is over): count afresh.
            idle = self.ticks - self.seen > 2
            self.seen = self.ticks
            if idle or current is not self.watch:  # an entry since the last tick wrote over the mark
                self.call += 1
                if current is None:
                    # Wasm entered without naming its instance (instantiation, bench/vm.py's noop
                    # floor): nothing to mark, so it counts until wasm idles, under the default limit.
                    self.watch = None
                else:
                    instance = current.instance if isinstance(current, Watch) else current
                    self.watch = entry.current = Watch(instance)
                self.ran, self.last = 0.0, now
                return 0
            # Time between two ticks counts up to two ticks' worth: longer means the
            # call was in a host function (or the thread was not scheduled), and an
            # overloaded machine still adds up to the limit.
            self.ran += min(now - self.last, 2 * TICK_SECONDS)
            self.last = now
            inst = current.instance if current is not None else None
            limit = DEFAULT_TIME_LIMIT if inst is None else inst.time_limit
            if limit is None or self.ran < limit:
                return 0
            self.watch = Watch(None)  # a mark no entry holds: whatever runs next starts afresh
            if inst is not None:
                inst.stopped_after = limit
            message = f"the hard stop ended a call that ran longer than its time limit of {limit:g} s"
            error = ffi.wasmtime_error_new(ctypes.create_string_buffer(message.encode()))
            return ctypes.cast(error, ctypes.c_void_p).value or 0
        except BaseException:  # pragma: no cover - a ctypes callback must not raise
            return 0


def _size_memories_to_fit(config: wasmtime.Config) -> None:
    """Reserve for each linear memory its fixed size only, so that 100,000+ instances fit in a process.

    By default wasmtime reserves 4 GiB of address space plus guard regions per
    memory so that compiled code needs no bounds checks, and x86-64 user space
    (128 TiB) then holds ~32,250 instances: the next one fails with "mmap failed
    to reserve 0x104000000 bytes".  Reserving just the module's 384 KiB (it never
    grows) with no guard makes wasmtime compile explicit bounds checks, and the
    kernel merges the adjacent read-write regions: 110,000 live VMs used 0.012
    mappings each.  Measured on bench/vm.py's guest loop (interleaved, median
    of 40 pairs): 1.00-1.04x of 4 GiB reservations with the hard stop's epoch checks
    compiled in, but 1.33x without them, so the ``time_limit=None`` engine, which
    exists to be fast, keeps the default reservations.

    Cranelift's Spectre guard on heap accesses (a conditional move per load and
    store) cost 1.09x of the guest loop here, and is turned off: it stops
    speculative reads past the memory's end, but every address the guest's bytecode
    can steer is inside the Microvium RAM page (the engine decodes its 16-bit
    pointers as page | offset), so the code reachable from a guest never indexes
    near the end.  Default reservations have no such guard either (they need none).
    """
    config.memory_reservation = _abi.WASM_MEMORY_BYTES
    config.memory_guard_size = 0
    config.memory_reservation_for_growth = 0
    config.memory_may_move = False  # the host keeps views on the base address
    config.cranelift_flag_set("enable_heap_access_spectre_mitigation", "false")


class WasmEngine:
    """The compiled engine module, linked once per process for each hard-stop setting.

    The epoch checks that make the hard stop possible are compiled into the
    module: callgrind counts 1.28x the instructions on bench/vm.py's guest
    loop with them (an interpreter takes a back-edge per bytecode and a
    function entry per helper call, each one check).  VMs restored with
    ``time_limit=None`` therefore run on a second engine compiled without
    them, created on first use (one more module compile, ~0.1 s).
    """

    _engines: ClassVar[dict[bool, WasmEngine]] = {}
    _next_cookie: ClassVar[int] = 1

    def __init__(self, hard_stop: bool = True) -> None:
        if not WASM_PATH.exists():
            raise EngineMissing(f"the Microvium engine is not built ({WASM_PATH} is missing); {BUILD_HINT}")
        config = wasmtime.Config()
        # Copy-on-write memory images cost two extra kernel mappings per instance (the
        # kernel's vm.max_map_count, 65,530, caps mappings).  The engine's data is a few
        # hundred bytes, so copying it at instantiation costs nothing measurable.
        config.memory_init_cow = False
        if hard_stop:
            _size_memories_to_fit(config)
        # The hard stop (see _HardStop).  A serialized module only loads into an engine
        # with the same setting.
        config.epoch_interruption = hard_stop
        wasm = WASM_PATH.read_bytes()
        if _abi.digest_in(wasm) != _abi.digest():
            raise EngineMissing(f"the Microvium engine build {WASM_PATH} is stale: it was not built from this "
                                f"mvactors' ABI table (mvactors/vm/_abi.py); rebuild it: {BUILD_HINT}")
        self.engine = wasmtime.Engine(config)
        self.module = wasmtime.Module(self.engine, wasm)
        self.linker = wasmtime.Linker(self.engine)
        self.hosts: dict[int, Host] = {}
        self.bases: dict[int, int] = {}  # cookie -> linear memory base
        self._callbacks: list[Any] = []  # keep ctypes callbacks alive
        self._define_imports()
        self.pre = self.linker.instantiate_pre(self.module)
        self.store = wasmtime.Store(self.engine)
        # The default caps (10,000 instances and memories per store) are below what a
        # fleet needs; the real ceiling is address space (see _size_memories_to_fit).
        self.store.set_limits(instances=10_000_000, memories=10_000_000, tables=10_000_000)
        self.ctx = self.store._context()
        self.entry = Entry()
        self.hard_stop = _HardStop(self.engine, self.store, self.entry) if hard_stop else None
        self.call_raw = _raw_call_fn()
        self.layout: Layout | None = None

    @classmethod
    def get(cls, hard_stop: bool = True) -> WasmEngine:
        """The process-wide engine with or without the hard stop (wasmtime types must not cross engines)."""
        engine = cls._engines.get(hard_stop)
        if engine is None:
            engine = cls._engines[hard_stop] = WasmEngine(hard_stop)
        return engine

    def new_cookie(self, base: int) -> int:
        """A number identifying a new instance in host calls (32 bits).

        Unique in the process, not just in this engine: the host keeps per-instance
        tables keyed by cookie (the fast call classes), and two engines' first
        instances must not share one.
        """
        cookie = WasmEngine._next_cookie
        if cookie > _abi.COOKIE_MAX:
            raise RuntimeError(f"too many engine instances for one process ({_abi.COOKIE_MAX:,})")
        WasmEngine._next_cookie += 1
        self.bases[cookie] = base
        return cookie

    def _define(self, name: str, params: list[wasmtime.ValType], results: list[wasmtime.ValType], fn: Any,
                raw_address: bool = False, c_callback: tuple[int, Any] | None = None) -> None:
        functype = wasmtime.FuncType(params, results)
        env = None
        if c_callback is not None:
            # A C function (_fastcall.c) and the object it receives as env, kept alive here.
            address, owner = c_callback
            self._callbacks.append(owner)
            callback = _UNCHECKED_CB(address)
            env = ctypes.c_void_p(id(owner))
        elif raw_address:
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
            env,
            _FINALIZER(0),
        )
        if error:
            raise wasmtime.WasmtimeError._from_ptr(error)

    def _define_imports(self) -> None:
        i32, i64, f64 = wasmtime.ValType.i32(), wasmtime.ValType.i64(), wasmtime.ValType.f64()
        hosts = self.hosts
        c_int32_p = ctypes.POINTER(ctypes.c_int32)
        c_double_p = ctypes.POINTER(ctypes.c_double)
        bases = self.bases

        views: dict[int, Any] = {}  # raw buffer address -> int64 view (a handful of addresses recur)
        cookie_shift, max_id = _abi.HOST_CALL_COOKIE_SHIFT, _abi.MAX_ID
        # The same dispatch in C when the extension is there: a ctypes callback's entry alone
        # costs more than the rest of the round trip (see _fastcall.c's host-call section).
        self.dispatch: Any = None
        if FASTCALL is not None:
            self.dispatch = FASTCALL.HostDispatch(
                hosts=hosts, bases=bases, cookie_shift=cookie_shift, max_id=max_id, tag=_abi.INT14_TAG,
                sign=_abi.INT14_SIGN, bias=_abi.INT14_BIAS, host_error=E_HOST_ERROR, small_min=_abi.INT14_MIN,
                small_max=_abi.INT14_MAX, undefined=_abi.UNDEFINED, true_value=_abi.TRUE, false_value=_abi.FALSE,
                info_args=_abi.CALL_INFO_ARGS, info_argc=_abi.CALL_INFO_ARGC, info_result=_abi.CALL_INFO_RESULT,
                info_async=_abi.CALL_INFO_ASYNC)

        def call(_env: Any, _caller: Any, raw: int, _n: int) -> int:
            # The guest's details of the call are in the instance's memory; the raw
            # buffer carries only cookie << 16 | import id, and takes the result.
            view = views.get(raw)
            if view is None:
                view = views[raw] = ctypes.c_int64.from_address(raw)
            packed = view.value  # cookie << 16 | import id: >= 0, the cookie being 32 bits
            # Errors must not escape a ctypes callback (they would only be
            # printed); hosts catch everything and return a code.
            try:
                view.value = hosts[packed >> cookie_shift].on_host_call(packed & max_id)
            except BaseException:  # pragma: no cover - hosts already catch
                view.value = E_HOST_ERROR
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

        if self.dispatch is not None:
            self._define("call", [i64], [i32], None, c_callback=(self.dispatch.callback_address(), self.dispatch))
        else:
            self._define("call", [i64], [i32], call, raw_address=True)
        self._define("breakpoint", [i32, i32], [], breakpoint)
        self._define("fmod", [f64, f64], [f64], fmod)
        self._define("pow", [f64, f64], [f64], pow_)
        self._define("format_double", [i32, f64, i32], [i32], format_double)


# Parameters and results of every raw call go through one process-wide buffer:
# a nested call (guest -> host -> another instance) finishes before the outer
# call's results are written, so sharing is safe, and it saves per-instance setup.
_RAW = (ctypes.c_byte * (_RAW_SLOT * 8))()
_RAW_I32 = (ctypes.c_int32 * (4 * 8)).from_buffer(_RAW)
_RAW_ADDR = ctypes.addressof(_RAW)
_TRAP = ctypes.c_void_p()
_TRAP_ADDR = ctypes.addressof(_TRAP)

if FASTCALL is not None:
    FASTCALL.configure_ops(raw_call_address(), _RAW_ADDR, _TRAP_ADDR)
# Instance._op's raw call in C (0.54 µs where ctypes took 1.8 µs), and a copy of memory.
_C_OP: Callable[..., int] | None = FASTCALL.op if FASTCALL is not None else None
bytes_at: Callable[[int, int], bytes] = FASTCALL.bytes_at if FASTCALL is not None else ctypes.string_at

_FUNC_SLOTS = {"mvx_op": 0, "mvx_call": 1, "mvx_noop": 2}
"""The function exports the host calls, and their slots in ``Instance._funcs``."""

RawParts = tuple[Callable[..., int | None], int, int, int, int, Any, ctypes.c_void_p, Entry]
"""(raw call, store context, function, raw buffer, trap slot address, buffer as int32s, trap slot, entry)."""


class Instance:
    """One instantiated engine module: linear memory plus the glue's operations.

    Each operation is a method doing one raw call through the ``mvx_op``
    dispatcher (``call`` and the benchmark's ``noop`` are exports of their
    own); it returns the wasm result.  A trap raises EngineTrap and marks the
    instance dead.
    """

    layout: Layout

    def __init__(self, engine: WasmEngine | None = None) -> None:
        self.engine = engine = engine or WasmEngine.get()
        self.stoppable = engine.hard_stop is not None
        # All instances share one Store: a Store costs ~3 KB and a few µs, and
        # instances are pooled for reuse rather than freed (see mvactors.vm).
        self.store = engine.store
        ctx = engine.ctx
        self._ctx = ctx
        self._ctx_addr: int = ctypes.cast(ctx, ctypes.c_void_p).value or 0
        self._call_raw = engine.call_raw
        self.entry = engine.entry
        instance = ffi.wasmtime_instance_t()
        trap = ctypes.POINTER(ffi.wasm_trap_t)()
        error = ffi.wasmtime_instance_pre_instantiate(engine.pre.ptr(), ctx, ctypes.byref(instance), ctypes.byref(trap))
        if error:
            raise wasmtime.WasmtimeError._from_ptr(error)
        if trap:
            raise wasmtime.Trap._from_ptr(trap)
        self._instance = instance
        # The func structs whose addresses raw calls use, one slot per export in _FUNC_SLOTS:
        # one ctypes array instead of a list of structs saves ~0.5 KiB per instance.
        self._funcs = (ffi.wasmtime_func_t * len(_FUNC_SLOTS))()
        self._op_addr = self._func_address("mvx_op")
        self._call_addr = self.call_address = self._func_address("mvx_call")
        memory = self._export("memory")
        base = ffi.wasmtime_memory_data(ctx, ctypes.byref(memory))
        self.base: int = ctypes.cast(base, ctypes.c_void_p).value or 0
        self.dead = False
        self.fatal: EngineTrap | None = None
        self.time_limit: float | None = DEFAULT_TIME_LIMIT  # seconds per entry; the VM sets its own
        self.stopped_after: float | None = None  # the time limit the hard stop enforced, if it did
        if engine.layout is None:
            engine.layout = Layout(self.layout_value)
            if engine.dispatch is not None:
                engine.dispatch.set_call_info(engine.layout.call_info)
        self.layout = layout = engine.layout
        self.cookie = engine.new_cookie(self.base)
        ctypes.c_uint32.from_address(self.base + layout.cookie).value = self.cookie
        # The details of a host call in progress (_abi.CALL_INFO_*): arguments address, count,
        # result address, async flag, and how many host calls (or breakpoints) are in progress.
        self.call_info = (ctypes.c_uint32 * 5).from_address(self.base + layout.call_info)
        # The glue's state as 32-bit words (index with Layout.word(field address)): a view made
        # once instead of a ctypes object per read.
        self.state32 = (ctypes.c_uint32 * (layout.state_size // 4)).from_address(self.base + layout.state)
        # All of linear memory as 16-bit words: guest values are read and written in place.
        self.mem16 = (ctypes.c_uint16 * (_abi.WASM_MEMORY_BYTES // 2)).from_address(self.base)
        self._f64 = ctypes.c_double.from_address(self.base + layout.f64)

    call: Callable[[int], int]
    """``mvx_call(a)``, made on first use (see __getattr__)."""

    def __getattr__(self, name: str) -> Any:
        # ``call`` is a closure over nine cells, ~0.7 KiB: the trivial call path (_calls.py) never
        # uses it, and an instance made with it carries it for life (bench/vm.py's live-VM row).
        if name == "call":
            self.call = call = self.direct("call")
            return call
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

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
        func = self._funcs[_FUNC_SLOTS[name]]  # a view on the array's slot
        ctypes.pointer(func)[0] = item.of.func
        return func

    def _func_address(self, name: str) -> int:
        return ctypes.addressof(self._export(name))

    def raw_parts(self) -> RawParts:
        """What a caller needs to make ``mvx_call`` inline (the hot path: no Python frame of ours).

        The caller sets ``entry.current`` to this instance around the raw call, as ``_op`` does.
        """
        return self._call_raw, self._ctx_addr, self._call_addr, _RAW_ADDR, _TRAP_ADDR, _RAW_I32, _TRAP, self.entry

    def direct(self, export: Literal["call", "noop"]) -> Callable[[int], int]:
        """A closure calling export ``mvx_<export>(a)`` with one raw call: the cheapest checked call there is.

        ``noop`` (bench/vm.py's floor) leaves the engine's ``Entry`` alone: an empty
        function cannot outrun a time limit, and the floor stays the bare raw call.
        """
        faddr = self._call_addr if export == "call" else self._func_address("mvx_" + export)
        call_raw, ctx_addr = self._call_raw, self._ctx_addr
        raw_addr, trap_addr, i32, trap_slot, fail = _RAW_ADDR, _TRAP_ADDR, _RAW_I32, _TRAP, self.fail
        entry = self.entry

        def noop(a: int = 0) -> int:
            i32[0] = a
            error = call_raw(ctx_addr, faddr, raw_addr, 1, trap_addr)
            if error or trap_slot.value:
                fail(error)
            return i32[0]

        def direct(a: int = 0) -> int:
            i32[0] = a
            outer, entry.current = entry.current, self
            try:
                error = call_raw(ctx_addr, faddr, raw_addr, 1, trap_addr)
            finally:
                entry.current = outer
            if error or trap_slot.value:
                fail(error)
            return i32[0]

        return direct if export == "call" else noop

    def _op(self, op: int, a: int = 0, b: int = 0, c: int = 0) -> int:
        if _C_OP is not None:
            return _C_OP(self._ctx_addr, self._op_addr, self.entry, self, op, a, b, c)
        i32 = _RAW_I32
        i32[0] = op
        i32[4] = a
        i32[8] = b
        i32[12] = c
        entry = self.entry
        outer, entry.current = entry.current, self
        try:
            error = self._call_raw(self._ctx_addr, self._op_addr, _RAW_ADDR, 4, _TRAP_ADDR)
        finally:
            entry.current = outer
        if error or _TRAP.value:
            self.fail(error)
        return i32[0]

    # ---- the glue's operations (engine/src/glue.c documents each) ----

    def layout_value(self, index: int) -> int:
        """``mvx_layout(index)``: an address, offset or limit (``_abi.Field``)."""
        return self._op(Op.LAYOUT, index)

    def restore(self, size: int, with_breakpoints: bool) -> int:
        """Restore the snapshot of ``size`` bytes written at ``layout.rom``; an mvm_TeError."""
        return self._op(Op.RESTORE, size, 1 if with_breakpoints else 0)

    def link_handles(self, count: int) -> int:
        """Root handle slots up to ``count``; returns how many are linked."""
        return self._op(Op.LINK_HANDLES, count)

    def export(self, export_id: int) -> int:
        """The value exported as ``export_id``, or -error."""
        return self._op(Op.EXPORT, export_id)

    def call_this(self, packed: int) -> int:
        """``mvx_call`` with the value in ``layout.this_value`` as ``this``."""
        return self._op(Op.CALL_THIS, packed)

    def get(self, object_addr: int, key_addr: int) -> int:
        """Property ``*key_addr`` of ``*object_addr`` (handle addresses), or -error."""
        return self._op(Op.GET, object_addr, key_addr)

    def set(self, object_addr: int, key_addr: int, value_addr: int) -> int:
        """Set a property (all three by handle address); 0 or -error."""
        return self._op(Op.SET, object_addr, key_addr, value_addr)

    def keys(self, object_addr: int) -> int:
        """An array of the object's own enumerable keys, or -error."""
        return self._op(Op.KEYS, object_addr)

    def new_number(self, x: float) -> int:
        self._f64.value = x
        return self._op(Op.NEW_NUMBER)

    def new_string(self, size: int) -> int:
        """A string of the ``size`` UTF-8 bytes written at the scratch area."""
        return self._op(Op.NEW_STRING, size)

    def new_bytes(self, size: int) -> int:
        """A Uint8Array of the ``size`` bytes written at the scratch area."""
        return self._op(Op.NEW_BYTES, size)

    def new_array(self, capacity: int) -> int:
        return self._op(Op.NEW_ARRAY, capacity)

    def new_object(self) -> int:
        return self._op(Op.NEW_OBJECT)

    def type_of(self, value: int) -> int:
        """The value's mvm_TeType (``_abi.T_*``)."""
        return self._op(Op.TYPE_OF, value)

    def to_number(self, value: int) -> float:
        self._op(Op.TO_NUMBER, value)
        return self._f64.value

    def equal(self, a: int, b: int) -> bool:
        return bool(self._op(Op.EQUAL, a, b))

    def string(self, value: int) -> int:
        """Address of a string's UTF-8 bytes; their length is in ``layout.out_size``."""
        return self._op(Op.STRING, value)

    def bytes(self, value: int) -> int:
        """Address of a Uint8Array's bytes; their length is in ``layout.out_size``."""
        return self._op(Op.BYTES, value)

    def promise_state(self, value: int) -> int:
        """An ``_abi.PromiseState``; a settled value is left in ``layout.result``."""
        return self._op(Op.PROMISE_STATE, value)

    def snapshot(self) -> int:
        """Write a snapshot into the scratch area; its size, or -error."""
        return self._op(Op.SNAPSHOT)

    def gc(self, squeeze: bool) -> None:
        self._op(Op.GC, 1 if squeeze else 0)

    def memory_stats(self) -> None:
        """Fill ``layout.stats`` (mvm_TsMemoryStats)."""
        self._op(Op.MEMORY_STATS)

    def set_breakpoint(self, address: int) -> None:
        self._op(Op.SET_BREAKPOINT, address)

    def remove_breakpoint(self, address: int) -> None:
        self._op(Op.REMOVE_BREAKPOINT, address)

    def current_address(self) -> int:
        return self._op(Op.CURRENT_ADDRESS)

    def host_func_id(self, value: int) -> int:
        """The import ID behind a host-function value, or -1."""
        return self._op(Op.HOST_FUNC_ID, value)

    def new_host_func(self, import_id: int) -> int:
        """A host-function value for ``import_id``, or -1 when the snapshot does not import it."""
        return self._op(Op.NEW_HOST_FUNC, import_id)

    def heap_info(self, what: int) -> int:
        """Allocator statistics of the RAM page (``_abi.HeapInfo``)."""
        return self._op(Op.HEAP_INFO, what)

    def heap_offset(self, value: int) -> int:
        """The heap offset of ``value``, or -1 when it is not in the heap."""
        return self._op(Op.HEAP_OFFSET, value)

    def value_at_offset(self, offset: int) -> int:
        """The value at heap ``offset`` of a freshly restored VM, or -1."""
        return self._op(Op.VALUE_AT_OFFSET, offset)

    # ---- lifetime ----

    def attach(self, host: Host) -> None:
        """Route this instance's host calls and breakpoints to ``host``."""
        self.engine.hosts[self.cookie] = host

    def detach(self) -> None:
        self.engine.hosts.pop(self.cookie, None)

    def fail(self, error: int | None = None) -> None:
        """Raise the EngineTrap of the trap (or the ``error``, which is freed) that just ended a raw call.

        Marks the instance dead.
        """
        trap_ptr = _TRAP.value
        _TRAP.value = None
        self.dead = True
        packed = ctypes.c_int32.from_address(self.base + self.layout.fatal_code).value
        fatal = packed & _abi.FATAL_CODE_MASK
        phase = (packed >> _abi.FATAL_PHASE_SHIFT) & 3
        heap_used = packed >> _abi.FATAL_HEAP_SHIFT
        message = "WebAssembly trap"
        if error:  # owned by the wrapper, which frees it
            message = str(wasmtime.WasmtimeError._from_ptr(ctypes.cast(error, ctypes.POINTER(ffi.wasmtime_error_t))))
        if trap_ptr:
            trap = wasmtime.Trap._from_ptr(ctypes.cast(trap_ptr, ctypes.POINTER(ffi.wasm_trap_t)))
            message = trap.message
        stopped, self.stopped_after = self.stopped_after, None
        if stopped is not None:
            message = f"the call ran longer than its time limit of {stopped:g} s"
        self.fatal = EngineTrap(fatal, message, stopped, phase, heap_used)
        raise self.fatal

    def close(self) -> None:
        self.detach()
        self.dead = True

    @property
    def busy(self) -> bool:
        """True while guest code of this instance is running (Python is inside one of its host calls)."""
        return bool(self.call_info[_abi.CALL_INFO_DEPTH])


def native_library_path() -> Path:
    """Path of the native reference build (for tests and bench)."""
    if not NATIVE_PATH.exists():
        raise EngineMissing(f"the native reference engine is not built ({NATIVE_PATH}); {BUILD_HINT}")
    return NATIVE_PATH


__all__ = [
    "BUILD_HINT",
    "DEFAULT_TIME_LIMIT",
    "EngineMissing",
    "EngineTrap",
    "Entry",
    "Host",
    "Instance",
    "Layout",
    "WasmEngine",
    "c_fmod",
    "c_pow",
    "native_library_path",
    "raw_call_address",
]

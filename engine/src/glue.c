/*
 * mvactors' glue around the Microvium engine.
 *
 * The engine source is included into this translation unit so the glue can
 * reach internals (property access, object keys, promise state) that
 * microvium.h does not declare.  One VM per module instance: the glue keeps it
 * in a static, and the host addresses values through handles whose addresses
 * are fixed, so the host can read and write them directly in linear memory.
 */
#include <stddef.h>
#include "host.h"
#include "microvium.c"
/* The host ABI's constants (MVX_OP_*, MVX_L_*, limits), generated from
 * mvactors/vm/_abi.py by engine/build.py, with static assertions that the
 * engine's values are what the host assumes. */
#include "mvx_abi.h"
_Static_assert(MVX_HOST_CALL_BITS == 64, "mvh_call takes a uint64_t (host.h)");

/* The native sizes the wasm build pads its page allocations to (microvium_port.h). */
#ifdef MVX_NATIVE
#define MVX_CHECK_LP64_SIZE(type, size) _Static_assert(sizeof (type) == (size), "native sizeof " #type)
#else
#define MVX_CHECK_LP64_SIZE(type, size) \
  _Static_assert(sizeof (type) + MVX_LP64_PAD(type, size) == (size) && sizeof (type) <= (size), "pad " #type)
#endif
MVX_CHECK_LP64_SIZE(mvm_VM, MVX_LP64_SIZEOF_VM);
MVX_CHECK_LP64_SIZE(TsBucket, MVX_LP64_SIZEOF_BUCKET);
MVX_CHECK_LP64_SIZE(vm_TsStack, MVX_LP64_SIZEOF_STACK);
MVX_CHECK_LP64_SIZE(TsBreakpoint, MVX_LP64_SIZEOF_BREAKPOINT);

#ifdef MVX_NATIVE
#include <stdarg.h>
#include <stdio.h>
#define MVX_API(name) __attribute__((visibility("default")))
#define MVX_EXPORT(name) __attribute__((visibility("default")))
mvh_call_t mvh_call;
mvh_breakpoint_t mvh_breakpoint;
int mvx_snprintf(char* buf, size_t size, const char* format, ...) {
  va_list ap;
  va_start(ap, format);
  int n = vsnprintf(buf, size, format, ap);
  va_end(ap);
  return n;
}
MVX_API(mvx_set_host) void mvx_set_host(mvh_call_t call, mvh_breakpoint_t breakpoint) {
  mvh_call = call;
  mvh_breakpoint = breakpoint;
}
#else
/* The wasm module exports only mvx_op (a dispatcher), mvx_call and mvx_noop:
 * each export costs the host a lookup per new instance. */
#define MVX_API(name) static
#define MVX_EXPORT(name) __attribute__((export_name(#name)))
#endif

uint8_t mvx_ram_page[65536] __attribute__((aligned(65536)));

/*
 * Everything the host reads and writes in place, in one struct so its order
 * is fixed: a small VM touches few memory pages (resident memory per VM is a
 * product metric).  The state comes first; `area` then holds the snapshot,
 * the import table (8-byte aligned after it) and the host's handle slots
 * (after that), so for a small VM all of them share the state's page; the
 * scratch area, used only for values in transit, sits at the end.  The
 * layout is part of the host ABI: mvactors/vm/_wasm.py reads it with
 * mvx_layout(), and the per-restore positions from the pointers below.
 */
enum {
  MVX_SCRATCH_OFFSET = MVX_ROM_SIZE + 4 * MVX_MAX_IMPORTS + MVX_MAX_HANDLES * sizeof(mvm_Handle),
  MVX_AREA_SIZE = MVX_SCRATCH_OFFSET + MVX_SCRATCH_SIZE,
};

static struct {
  struct {
    uint32_t cookie;                 /* identifies this instance in host calls */
    uint32_t out_size;               /* byte length returned by string/bytes reads */
    int32_t fatal_code;              /* set before trapping on a fatal error */
    uint32_t import_count;
    int32_t missing_import;          /* first import the host could not satisfy */
    uint32_t* imports;               /* sorted: id | MVX_IMPORT_ASYNC flag; after the snapshot */
    mvm_Handle* handles;             /* host handle slots; after the import table */
    uint8_t* scratch;                /* strings, bytes and snapshots in transit */
    double f64;                      /* float parameter/result of mvx_op */
    uint32_t call_args;              /* host call in progress (wasm): address of the arguments, */
    uint32_t call_argc;              /*   their count, */
    uint32_t call_result;            /*   where the result goes, */
    uint32_t call_async;             /*   and whether the import is asynchronous; */
    uint32_t call_depth;             /*   host calls (and breakpoints) in progress: the instance is busy */
    mvm_Handle this_value;           /* `this` for method calls */
    mvm_Handle result;               /* result of the last call or accessor */
    mvm_Handle callback;             /* async continuation from mvm_asyncStart */
    mvm_Handle target;               /* copy of the object for property access (the engine rewrites it) */
    mvm_Handle args[MVX_MAX_ARGS];   /* call arguments */
    mvm_TsMemoryStats stats;
    /* glue-private */
    mvm_VM* vm;
    uint32_t handles_linked;
    uint32_t last_free;              /* allocator: last freed block (see mvx_malloc) */
    /* allocator: the page has been used only in [0, low_end) and [top_start, 64K)
     * since the last reset (what a recycled instance zeroes and a savepoint copies) */
    uint32_t low_end;
    uint32_t top_start;
    uint32_t snapshotting;           /* mvx_malloc serves the snapshot buffer from scratch */
  } s;
  uint8_t area[MVX_AREA_SIZE] __attribute__((aligned(8)));
} mvx_mem;

#define mvx mvx_mem.s
#define vm mvx.vm
#define mvx_rom mvx_mem.area
#define MVX_HANDLE(slot) (&mvx.handles[slot])
#define MVX_ALIGN8(n) (((n) + 7u) & ~7u)

#ifndef MVX_NATIVE
/* The engine formats only "%d" (PRId32) and "%.15g". */
#include <stdarg.h>
int mvx_snprintf(char* buf, size_t size, const char* format, ...) {
  va_list ap;
  va_start(ap, format);
  int n;
  if (format[0] == '%' && format[1] == 'd') {
    int32_t v = va_arg(ap, int32_t);
    char tmp[12];
    uint32_t u = v < 0 ? (uint32_t)0 - (uint32_t)v : (uint32_t)v;
    int len = 0;
    do { tmp[len++] = (char)('0' + u % 10); u /= 10; } while (u);
    n = 0;
    if (v < 0) buf[n++] = '-';
    while (len) buf[n++] = tmp[--len];
    buf[n] = 0;
  } else {
    double d = va_arg(ap, double);
    n = mvh_format_double(mvx.cookie, d, (uintptr_t)buf);
    buf[n] = 0;
  }
  va_end(ap);
  (void)size;
  return n;
}
#endif

/* ---- allocator: first fit over the RAM page, coalescing while it walks ---- */

/* Block header: size in bytes including the header, low bit set when in use. */
typedef uint32_t mvx_block;
#define BLOCK_SIZE(h) ((h) & ~(uint32_t)3)
#define BLOCK_USED 1u
#define MVX_LARGE_BLOCK 2048u
/* The engine frees its stack after every outermost call and allocates it again
 * on the next one; remembering the last freed block (mvx.last_free) makes that O(1). */

/* A recycled instance zeroes the parts of the page it used so nothing of the
 * previous VM can reach a snapshot. */
static void mvx_heap_reset(void) {
  if (mvx.low_end) memset(mvx_ram_page, 0, mvx.low_end);
  if (mvx.top_start && mvx.top_start < 65536) memset(mvx_ram_page + mvx.top_start, 0, 65536 - mvx.top_start);
  mvx.low_end = 8; /* the first block header, written below */
  mvx.top_start = 65536;
  /* The first block starts at offset 4 so no payload sits at short-pointer 0. */
  *(mvx_block*)&mvx_ram_page[4] = (65536 - 4);
  mvx.last_free = 0;
}

/* Marks `need` bytes of the free block at `offset` used: taken from the block's
 * start (low) or its end (high), leaving the rest free. */
static void mvx_note_used(uint32_t offset, uint32_t size) {
  if (offset < 32768) {
    /* + 4: the header of the free block that follows */
    if (offset + size + 4 > mvx.low_end) mvx.low_end = offset + size + 4 > 65536 ? 65536 : offset + size + 4;
  } else if (offset < mvx.top_start) {
    mvx.top_start = offset;
  }
}

static void* mvx_take(uint32_t offset, uint32_t blockSize, uint32_t need, int high) {
  if (blockSize - need < 16) {
    *(mvx_block*)&mvx_ram_page[offset] = blockSize | BLOCK_USED;
    mvx_note_used(offset, blockSize);
    return (mvx_block*)&mvx_ram_page[offset] + 1;
  }
  if (high) {
    *(mvx_block*)&mvx_ram_page[offset] = blockSize - need;
    offset += blockSize - need;
  } else {
    *(mvx_block*)&mvx_ram_page[offset + need] = blockSize - need;
  }
  *(mvx_block*)&mvx_ram_page[offset] = need | BLOCK_USED;
  mvx_note_used(offset, need);
  if (high) mvx_note_used(offset - (blockSize - need), 0); /* the shrunk free block's header */
  return (mvx_block*)&mvx_ram_page[offset] + 1;
}

/*
 * Small blocks (buckets, the stack) are placed first-fit from the bottom of the
 * page and large ones (the GC's new space, snapshot buffers) last-fit from the
 * top.  Keeping the two apart leaves a large contiguous hole in the middle,
 * which is what a copying GC at ~29 KB of heap in a 64 KB page needs.
 */
void* mvx_malloc(size_t size) {
  if (mvx.snapshotting) {
    mvx.snapshotting = 0;
    return size <= MVX_SCRATCH_SIZE ? mvx.scratch : NULL;
  }
  if (size > 65536) return NULL;
  uint32_t need = ((uint32_t)size + sizeof(mvx_block) + 3) & ~(uint32_t)3;
  int high = need >= MVX_LARGE_BLOCK;
  if (!high && mvx.last_free) {
    mvx_block* cached = (mvx_block*)&mvx_ram_page[mvx.last_free];
    uint32_t cachedOffset = mvx.last_free;
    mvx.last_free = 0;
    if (!(*cached & BLOCK_USED) && BLOCK_SIZE(*cached) >= need && BLOCK_SIZE(*cached) - need < 16) {
      return mvx_take(cachedOffset, BLOCK_SIZE(*cached), need, 0);
    }
  }
  uint32_t offset = 4, found = 0, foundSize = 0;
  while (offset < 65536) {
    mvx_block* block = (mvx_block*)&mvx_ram_page[offset];
    uint32_t blockSize = BLOCK_SIZE(*block);
    /* A zero size means something wrote over a block header: stop rather than spin. */
    if (blockSize == 0 || offset + blockSize > 65536) mvx_fatal(MVM_E_HEAP_CORRUPT);
    if (!(*block & BLOCK_USED)) {
      /* Merge following free blocks into this one. */
      uint32_t next = offset + blockSize;
      while (next < 65536 && !(*(mvx_block*)&mvx_ram_page[next] & BLOCK_USED)) {
        if (next == mvx.last_free) mvx.last_free = 0;
        uint32_t nextSize = BLOCK_SIZE(*(mvx_block*)&mvx_ram_page[next]);
        /* A zero size would never advance: the header was overwritten. */
        if (nextSize == 0 || next + nextSize > 65536) mvx_fatal(MVM_E_HEAP_CORRUPT);
        blockSize += nextSize;
        next += nextSize;
      }
      *block = blockSize;
      if (blockSize >= need) {
        if (!high) return mvx_take(offset, blockSize, need, 0);
        found = offset;
        foundSize = blockSize;
      }
    }
    offset += blockSize;
  }
  return found ? mvx_take(found, foundSize, need, 1) : NULL;
}

/* Allocator statistics for diagnostics: bytes free (what = MVX_HEAP_FREE_BYTES),
 * largest free block (MVX_HEAP_LARGEST_FREE), blocks in use (MVX_HEAP_USED_BLOCKS). */
static uint32_t mvx_heap_info(int32_t what) {
  uint32_t offset = 4, free_total = 0, largest = 0, used = 0;
  while (offset < 65536) {
    mvx_block h = *(mvx_block*)&mvx_ram_page[offset];
    if (BLOCK_SIZE(h) == 0 || offset + BLOCK_SIZE(h) > 65536) return 0xFFFFFFFFu; /* corrupt */
    if (h & BLOCK_USED) used++;
    else { free_total += BLOCK_SIZE(h); if (BLOCK_SIZE(h) > largest) largest = BLOCK_SIZE(h); }
    offset += BLOCK_SIZE(h);
  }
  return what == MVX_HEAP_FREE_BYTES ? free_total : what == MVX_HEAP_LARGEST_FREE ? largest : used;
}

void mvx_free(void* ptr) {
  if (!ptr || ptr == (void*)mvx.scratch) return;
  mvx_block* block = (mvx_block*)ptr - 1;
  *block &= ~BLOCK_USED;
  mvx.last_free = (uint32_t)((uint8_t*)block - mvx_ram_page);
}

/* ---- fatal errors, CRC ---- */

/* What the engine was doing (MVX_PHASE_GC, MVX_PHASE_SNAPSHOT, or 0 while it
 * runs guest code or a host request) and the heap bytes in use when it began,
 * packed as in mvx.fatal_code (see FATAL_PHASE_SHIFT in mvactors/vm/_abi.py).
 * A fatal error reports it, so "out of memory" at 2.8 KB of 29 KB during a
 * collection reads as the engine fault it is. */
static uint32_t mvx_phase;

uint32_t mvx_phase_enter_gc(uint16_t heapUsed) {
  uint32_t outer = mvx_phase;
  /* A squeeze collects twice, nested: report the outer collection's figure. */
  if (!outer) mvx_phase = MVX_PHASE_GC | ((uint32_t)heapUsed << (MVX_FATAL_HEAP_SHIFT - MVX_FATAL_PHASE_SHIFT));
  return outer;
}

void mvx_phase_leave(uint32_t outer) { mvx_phase = outer; }

void mvx_fatal(int code) {
  mvx.fatal_code = code | (int32_t)(mvx_phase << MVX_FATAL_PHASE_SHIFT);
#ifdef MVX_NATIVE
  fprintf(stderr, "microvium fatal error %d%s (heap %u B in use when it began)\n", code,
          (mvx_phase & 3) == MVX_PHASE_GC ? " during garbage collection"
          : (mvx_phase & 3) == MVX_PHASE_SNAPSHOT ? " while creating a snapshot" : "",
          (unsigned)(mvx_phase >> (MVX_FATAL_HEAP_SHIFT - MVX_FATAL_PHASE_SHIFT)));
  abort();
#else
  __builtin_trap();
#endif
}

uint16_t mvx_crc16(void* data, uint16_t size) {
  const uint8_t* p = data;
  uint16_t crc = 0xFFFF;
  while (size--) {
    uint8_t x = (uint8_t)(crc >> 8) ^ *p++;
    x ^= x >> 4;
    crc = (uint16_t)((crc << 8) ^ ((uint16_t)x << 12) ^ ((uint16_t)x << 5) ^ (uint16_t)x);
  }
  return crc;
}

/* ---- host functions ---- */

static uint32_t mvx_find_import(mvm_HostFunctionID id) {
  uint32_t lo = 0, hi = mvx.import_count;
  while (lo < hi) {
    uint32_t mid = (lo + hi) / 2;
    uint32_t entryId = mvx.imports[mid] & MVX_ID_MASK;
    if (entryId == id) return mvx.imports[mid] | 0x80000000u;
    if (entryId < id) lo = mid + 1; else hi = mid;
  }
  return 0;
}

static mvm_TeError mvx_dispatch(mvm_VM* v, mvm_HostFunctionID id, mvm_Value* result, mvm_Value* args, uint8_t argCount) {
  uint32_t is_async = (mvx_find_import(id) & MVX_IMPORT_ASYNC) != 0;
  if (is_async) {
    /* Must run before anything else touches the VM: it reads a register. */
    mvm_handleSet(&mvx.callback, mvm_asyncStart(v, result));
  }
#ifdef MVX_NATIVE
  return (mvm_TeError)mvh_call(mvx.cookie, id, (uintptr_t)args, argCount, (uintptr_t)result, is_async);
#else
  /* One parameter (instance cookie and import ID) and the rest in memory: each
   * parameter the host reads from wasmtime's raw buffer costs it far more than
   * reading the instance's memory through a view it already has.  The parameter
   * is 64 bits so that cookies, one per instance, can exceed 16 bits. */
  uint32_t outer[4] = {mvx.call_args, mvx.call_argc, mvx.call_result, mvx.call_async};
  mvx.call_args = (uint32_t)(uintptr_t)args;
  mvx.call_argc = argCount;
  mvx.call_result = (uint32_t)(uintptr_t)result;
  mvx.call_async = is_async;
  mvx.call_depth++;
  mvm_TeError err = (mvm_TeError)mvh_call(((uint64_t)mvx.cookie << MVX_HOST_CALL_COOKIE_SHIFT) | id);
  mvx.call_depth--;
  /* The host function may have called back into this VM, and a nested host
   * call overwrote the details: the level that resumes sees its own again. */
  mvx.call_args = outer[0];
  mvx.call_argc = outer[1];
  mvx.call_result = outer[2];
  mvx.call_async = outer[3];
  return err;
#endif
}

static mvm_TeError mvx_resolve_import(mvm_HostFunctionID id, void* context, mvm_TfHostFunction* out) {
  (void)context;
  if (!mvx_find_import(id)) {
    if (mvx.missing_import < 0) mvx.missing_import = id;
    return MVM_E_UNRESOLVED_IMPORT;
  }
  *out = mvx_dispatch;
  return MVM_E_SUCCESS;
}

static void mvx_on_breakpoint(mvm_VM* v, uint16_t address) {
  (void)v;
  mvx.call_depth++;
  mvh_breakpoint(mvx.cookie, address);
  mvx.call_depth--;
}

/* ---- lifecycle ---- */

/* Addresses of the host-visible statics, by index. */
MVX_API(mvx_layout) uintptr_t mvx_layout(int32_t what) {
  switch (what) {
    case MVX_L_STATE: return (uintptr_t)&mvx;
    case MVX_L_HANDLES: return (uintptr_t)&mvx.handles - (uintptr_t)&mvx;
    case MVX_L_ROM: return (uintptr_t)mvx_mem.area;
    case MVX_L_SCRATCH: return (uintptr_t)&mvx.scratch - (uintptr_t)&mvx;
    case MVX_L_PAGE: return (uintptr_t)mvx_ram_page;
    case MVX_L_ARGS: return (uintptr_t)&mvx.args[0] - (uintptr_t)&mvx;
    case MVX_L_THIS: return (uintptr_t)&mvx.this_value - (uintptr_t)&mvx;
    case MVX_L_RESULT: return (uintptr_t)&mvx.result - (uintptr_t)&mvx;
    case MVX_L_CALLBACK: return (uintptr_t)&mvx.callback - (uintptr_t)&mvx;
    case MVX_L_OUT_SIZE: return (uintptr_t)&mvx.out_size - (uintptr_t)&mvx;
    case MVX_L_FATAL: return (uintptr_t)&mvx.fatal_code - (uintptr_t)&mvx;
    case MVX_L_IMPORT_COUNT: return (uintptr_t)&mvx.import_count - (uintptr_t)&mvx;
    case MVX_L_MISSING_IMPORT: return (uintptr_t)&mvx.missing_import - (uintptr_t)&mvx;
    case MVX_L_IMPORTS: return (uintptr_t)&mvx.imports - (uintptr_t)&mvx;
    case MVX_L_STATS: return (uintptr_t)&mvx.stats - (uintptr_t)&mvx;
    case MVX_L_HANDLE_SIZE: return sizeof(mvm_Handle);
    case MVX_L_MAX_HANDLES: return MVX_MAX_HANDLES;
    case MVX_L_MAX_ARGS: return MVX_MAX_ARGS;
    case MVX_L_MAX_IMPORTS: return MVX_MAX_IMPORTS;
    case MVX_L_SCRATCH_SIZE: return MVX_SCRATCH_SIZE;
    case MVX_L_ROM_SIZE: return MVX_ROM_SIZE;
    case MVX_L_SIZE_T: return sizeof(size_t);
    case MVX_L_VERSION: return (MVM_ENGINE_MAJOR_VERSION << 8) | MVM_ENGINE_MINOR_VERSION;
    case MVX_L_COOKIE: return (uintptr_t)&mvx.cookie - (uintptr_t)&mvx;
    case MVX_L_F64: return (uintptr_t)&mvx.f64 - (uintptr_t)&mvx;
    case MVX_L_STATE_SIZE: return sizeof mvx;
    case MVX_L_LOW_END: return (uintptr_t)&mvx.low_end - (uintptr_t)&mvx;
    case MVX_L_TOP_START: return (uintptr_t)&mvx.top_start - (uintptr_t)&mvx;
    case MVX_L_HANDLES_LINKED: return (uintptr_t)&mvx.handles_linked - (uintptr_t)&mvx;
    case MVX_L_CALL_INFO: return (uintptr_t)&mvx.call_args - (uintptr_t)&mvx;
    case MVX_L_VM_PTR: return (uintptr_t)&vm - (uintptr_t)&mvx; /* `vm` is the field mvx.vm (a macro) */
    case MVX_L_GAS_OFFSET: return offsetof(VM, stopAfterNInstructions); /* the gas counter is a plain field */
    default: return 0;
  }
}

/* Cheap structural checks of a restored snapshot that the engine trusts: the
 * heap must parse into allocations, and the list of strings interned in RAM
 * must be a list of heap cells that ends (a cycle would make every new
 * property name walk it forever). */
static mvm_TeError mvx_check_restored(void) {
  TsBucket* bucket = vm->pLastBucket;
  if (!bucket) return MVM_E_SUCCESS;
  uint16_t* begin = (uint16_t*)getBucketDataBegin(bucket);
  uint16_t* end = bucket->pEndOfUsedSpace;
  for (uint16_t* p = begin; p < end;) {
    uint16_t size = vm_getAllocationSizeExcludingHeaderFromHeaderWord(*p++);
    p += (size + 1) / 2;
    if (p > end) return MVM_E_INVALID_BYTECODE;
  }
  uint32_t steps = (uint32_t)(end - begin) / 3 + 1; /* a cell takes at least 6 bytes */
  for (Value cell = getBuiltin(vm, BIN_INTERNED_STRINGS); cell != VM_VALUE_UNDEFINED;) {
    if (!Value_isShortPtr(cell) || !steps--) return MVM_E_INVALID_BYTECODE;
    uint16_t* pCell = ShortPtr_decode(vm, cell);
    if (pCell <= begin || pCell + 2 > end) return MVM_E_INVALID_BYTECODE;
    cell = ((TsInternedStringCell*)pCell)->spNext;
  }
  return MVM_E_SUCCESS;
}

/* Restores the snapshot of `size` bytes the host wrote at the start of the
 * area, with the import table (mvx.import_count entries) it wrote right after
 * it, 8-byte aligned.  Returns an mvm_TeError. */
MVX_API(mvx_restore) int32_t mvx_restore(uint32_t size, int32_t with_breakpoints) {
  if (size > MVX_ROM_SIZE || mvx.import_count > MVX_MAX_IMPORTS) return MVM_E_INVALID_ARGUMENTS;
  mvx.imports = (uint32_t*)(mvx_rom + MVX_ALIGN8(size));
  mvx.handles = (mvm_Handle*)((uint8_t*)mvx.imports + MVX_ALIGN8(4 * mvx.import_count));
  mvx.scratch = mvx_rom + MVX_SCRATCH_OFFSET;
  mvx_heap_reset();
  mvx.fatal_code = 0;
  mvx_phase = 0;
  mvx.missing_import = -1;
  mvx.handles_linked = 0;
  mvm_TeError err = mvm_restore(&vm, mvx_rom, size, NULL, mvx_resolve_import);
  if (!err) err = mvx_check_restored();
  if (err) {
    vm = NULL;
    return err;
  }
  for (int i = 0; i < MVX_MAX_ARGS; i++) mvm_initializeHandle(vm, &mvx.args[i]);
  mvm_initializeHandle(vm, &mvx.this_value);
  mvm_initializeHandle(vm, &mvx.result);
  mvm_initializeHandle(vm, &mvx.callback);
  mvm_initializeHandle(vm, &mvx.target);
  if (with_breakpoints) mvm_dbg_setBreakpointCallback(vm, mvx_on_breakpoint);
  return MVM_E_SUCCESS;
}

MVX_API(mvx_free_vm) void mvx_free_vm(void) {
  /* Everything the VM owns lives in the page, which the next restore resets. */
  vm = NULL;
}

/* Links handles [linked, count) into the VM's root set so the GC sees them. */
MVX_API(mvx_link_handles) int32_t mvx_link_handles(uint32_t count) {
  if (count > MVX_MAX_HANDLES) count = MVX_MAX_HANDLES;
  while (mvx.handles_linked < count) {
    mvm_initializeHandle(vm, MVX_HANDLE(mvx.handles_linked));
    mvx.handles_linked++;
  }
  return (int32_t)mvx.handles_linked;
}

/* ---- calls ---- */

/* The glue's own handles only carry values across one operation; emptying
 * them keeps the last call's arguments and result from outliving it. */
static void mvx_clear_transient_handles(void) {
  for (int i = 0; i < MVX_MAX_ARGS; i++) mvm_handleSet(&mvx.args[i], VM_VALUE_UNDEFINED);
  mvm_handleSet(&mvx.this_value, VM_VALUE_UNDEFINED);
  mvm_handleSet(&mvx.result, VM_VALUE_UNDEFINED);
  mvm_handleSet(&mvx.target, VM_VALUE_UNDEFINED);
}

static inline int32_t mvx_result_or_error(mvm_TeError err, mvm_Value value) {
  mvm_handleSet(&mvx.result, value);
  return err ? -(int32_t)err : (int32_t)value;
}

/* Calls the function held in handle `target & MVX_CALL_SLOT_MASK` with args[0..argc),
 * argc = (target >> MVX_CALL_ARGC_SHIFT) & MVX_CALL_ARGC_MASK.
 * One packed parameter keeps the host's hot path to a single store; the host
 * sets bit 31 so that, after a trap, the untouched parameter slot cannot be
 * mistaken for a result (results are values >= 0 or small negative errors).
 * Returns the result value, or -error with the thrown value in mvx.result. */
MVX_EXPORT(mvx_call) int32_t mvx_call(uint32_t target) {
  mvm_Value args[MVX_MAX_ARGS];
  mvm_Value result = VM_VALUE_UNDEFINED;
  uint32_t argc = (target >> MVX_CALL_ARGC_SHIFT) & MVX_CALL_ARGC_MASK;
  for (uint32_t i = 0; i < argc; i++) args[i] = mvm_handleGet(&mvx.args[i]);
  /* The call pushes args onto the VM stack before anything can collect; what the handles still
   * hold (this call's arguments, the last call's result or thrown value) must not stay a GC root
   * for the whole call: the heap would depend on what the host did last (the native reference
   * driver and VM differ there, so near the heap limit one build's GC failed and not the other's). */
  mvx_clear_transient_handles();
  mvm_TeError err = mvm_call(vm, mvm_handleGet(MVX_HANDLE(target & MVX_CALL_SLOT_MASK)), &result, args, (uint8_t)argc);
  return mvx_result_or_error(err, result);
}

/* mvx_call with mvx.this_value as `this`. */
MVX_API(mvx_call_this) int32_t mvx_call_this(uint32_t target) {
  mvm_Value args[MVX_MAX_ARGS];
  mvm_Value result = VM_VALUE_UNDEFINED;
  uint32_t argc = (target >> MVX_CALL_ARGC_SHIFT) & MVX_CALL_ARGC_MASK;
  for (uint32_t i = 0; i < argc; i++) args[i] = mvm_handleGet(&mvx.args[i]);
  mvm_Value self = mvm_handleGet(&mvx.this_value);
  mvx_clear_transient_handles(); /* as in mvx_call */
  mvm_TeError err = mvm_callEx(vm, mvm_handleGet(MVX_HANDLE(target & MVX_CALL_SLOT_MASK)), self,
                               &result, args, (uint8_t)argc);
  return mvx_result_or_error(err, result);
}

MVX_API(mvx_export) int32_t mvx_export(uint32_t id) {
  mvm_VMExportID exportId = (mvm_VMExportID)id;
  mvm_Value value = VM_VALUE_UNDEFINED;
  mvm_TeError err = mvm_resolveExports(vm, &exportId, &value, 1);
  return mvx_result_or_error(err, value);
}

/* ---- host-side operations ---- */

/* Engine internals (property access, array growth) anchor values on the VM
 * stack, which exists only during calls.  Host-side operations outside a call
 * get a stack for their duration, as mvm_call does. */
static bool mvx_enter(void) {
  if (vm->stack) return false;
  return vm_createStackAndRegisters(vm) == MVM_E_SUCCESS;
}

static void mvx_leave(bool created) {
  if (created && vm->stack && vm->stack->reg.pStackPointer == getBottomOfStack(vm->stack)) {
    vm_free(vm, vm->stack);
    vm->stack = NULL;
  }
}

/* ---- properties ---- */

MVX_API(mvx_get) int32_t mvx_get(uintptr_t object, uintptr_t key) {
  mvm_Value value = VM_VALUE_UNDEFINED;
  bool created = mvx_enter();
  /* getProperty replaces a class with its static-props object in place. */
  mvm_handleSet(&mvx.target, *(mvm_Value*)object);
  mvm_TeError err = getProperty(vm, mvm_handleAt(&mvx.target), (Value*)key, &value);
  mvm_handleSet(&mvx.target, VM_VALUE_UNDEFINED);
  mvx_leave(created);
  return mvx_result_or_error(err, value);
}

MVX_API(mvx_set) int32_t mvx_set(uintptr_t object, uintptr_t key, uintptr_t value) {
  bool created = mvx_enter();
  mvm_handleSet(&mvx.target, *(mvm_Value*)object);
  mvm_TeError err = setProperty(vm, mvm_handleAt(&mvx.target), (Value*)key, (Value*)value);
  mvm_handleSet(&mvx.target, VM_VALUE_UNDEFINED);
  mvx_leave(created);
  return -(int32_t)err;
}

/* Array of the own enumerable keys of *object, in mvx.result. */
MVX_API(mvx_keys) int32_t mvx_keys(uintptr_t object) {
  mvm_handleSet(&mvx.result, *(mvm_Value*)object);
  bool created = mvx_enter();
  mvm_TeError err = vm_objectKeys(vm, mvm_handleAt(&mvx.result));
  mvx_leave(created);
  return err ? -(int32_t)err : (int32_t)mvm_handleGet(&mvx.result);
}

/* ---- value construction and inspection ---- */

MVX_API(mvx_new_number) int32_t mvx_new_number(double x) { return mvm_newNumber(vm, x); }
MVX_API(mvx_new_string) int32_t mvx_new_string(uint32_t size) { return mvm_newString(vm, (const char*)mvx.scratch, size); }
MVX_API(mvx_new_bytes) int32_t mvx_new_bytes(uint32_t size) { return mvm_uint8ArrayFromBytes(vm, mvx.scratch, size); }
/* An empty array with room for `capacity` items, so filling it never regrows
 * (regrowing past 2047 items is a fatal engine error). */
MVX_API(mvx_new_array) int32_t mvx_new_array(uint32_t capacity) {
  bool created = mvx_enter();
  Value array = vm_newArray(vm, (uint16_t)capacity);
  mvx_leave(created);
  return array;
}

MVX_API(mvx_new_object) int32_t mvx_new_object(void) {
  TsPropertyList* object = GC_ALLOCATE_TYPE(vm, TsPropertyList, TC_REF_PROPERTY_LIST);
  object->dpNext = VM_VALUE_NULL;
  object->dpProto = VM_VALUE_NULL;
  return ShortPtr_encode(vm, object);
}

MVX_API(mvx_type_of) int32_t mvx_type_of(int32_t value) { return mvm_typeOf(vm, (mvm_Value)value); }
MVX_API(mvx_to_number) double mvx_to_number(int32_t value) { return mvm_toFloat64(vm, (mvm_Value)value); }
MVX_API(mvx_equal) int32_t mvx_equal(int32_t a, int32_t b) { return mvm_equal(vm, (mvm_Value)a, (mvm_Value)b); }

/* Address of the UTF-8 bytes of a string value; length in mvx.out_size.
 * Valid until the next allocation in the VM. */
MVX_API(mvx_string) uintptr_t mvx_string(int32_t value) {
  size_t size = 0;
  const char* p = mvm_toStringUtf8(vm, (mvm_Value)value, &size);
  mvx.out_size = (uint32_t)size;
  return (uintptr_t)p;
}

MVX_API(mvx_bytes) uintptr_t mvx_bytes(int32_t value) {
  uint8_t* data = NULL;
  size_t size = 0;
  if (mvm_uint8ArrayToBytes(vm, (mvm_Value)value, &data, &size)) return 0;
  mvx.out_size = (uint32_t)size;
  return (uintptr_t)data;
}

/* MVX_PROMISE_NONE (not a promise), _PENDING, _FULFILLED or _REJECTED; the
 * settled value is left in mvx.result. */
MVX_API(mvx_promise_state) int32_t mvx_promise_state(int32_t value) {
  if (mvm_typeOf(vm, (mvm_Value)value) != VM_T_OBJECT) return MVX_PROMISE_NONE;
  if (deepTypeOf(vm, (mvm_Value)value) != TC_REF_PROPERTY_LIST) return MVX_PROMISE_NONE;
  Value* p = ShortPtr_decode(vm, (mvm_Value)value);
  if (p[VM_OIS_PROTO] != getBuiltin(vm, BIN_PROMISE_PROTOTYPE)) return MVX_PROMISE_NONE;
  switch (p[VM_OIS_PROMISE_STATUS]) {
    case VM_PROMISE_STATUS_PENDING: return MVX_PROMISE_PENDING;
    case VM_PROMISE_STATUS_RESOLVED: mvm_handleSet(&mvx.result, p[VM_OIS_PROMISE_OUT]); return MVX_PROMISE_FULFILLED;
    case VM_PROMISE_STATUS_REJECTED: mvm_handleSet(&mvx.result, p[VM_OIS_PROMISE_OUT]); return MVX_PROMISE_REJECTED;
    default: return MVX_PROMISE_NONE;
  }
}

/* ---- snapshot, GC, stats, gas, debugging ---- */

/* Writes a snapshot to the scratch area; returns its size, or -error. */
/* Writes a snapshot into the scratch area; returns its size, or -error.
 * The engine's only allocation while snapshotting is its output buffer, which
 * would need heap-plus-ROM bytes contiguous in the RAM page (often impossible
 * once the heap is large); mvx_malloc hands it the scratch area instead. */
MVX_API(mvx_snapshot) int32_t mvx_snapshot(void) {
  size_t size = 0;
  mvx.snapshotting = 1;
  mvx_phase = MVX_PHASE_SNAPSHOT | ((uint32_t)getHeapSize(vm) << (MVX_FATAL_HEAP_SHIFT - MVX_FATAL_PHASE_SHIFT));
  void* data = mvm_createSnapshot(vm, &size);
  mvx_phase = 0;
  mvx.snapshotting = 0;
  if (!data) return -(int32_t)MVM_E_SNAPSHOT_TOO_LARGE;
  if (data != mvx.scratch) {
    memcpy(mvx.scratch, data, size);
    mvx_free(data);
  }
  return (int32_t)size;
}

MVX_API(mvx_gc) void mvx_gc(int32_t squeeze) {
  mvx_clear_transient_handles();
  mvm_runGC(vm, squeeze != 0);
}
MVX_API(mvx_memory_stats) void mvx_memory_stats(void) { mvm_getMemoryStats(vm, &mvx.stats); }
MVX_API(mvx_set_gas) void mvx_set_gas(int32_t n) { mvm_stopAfterNInstructions(vm, n); }
MVX_API(mvx_get_gas) int32_t mvx_get_gas(void) { return mvm_getInstructionCountRemaining(vm); }
MVX_API(mvx_set_breakpoint) void mvx_set_breakpoint(int32_t address) { mvm_dbg_setBreakpoint(vm, address); }
MVX_API(mvx_remove_breakpoint) void mvx_remove_breakpoint(int32_t address) {
  if (address >= 0) {
    mvm_dbg_removeBreakpoint(vm, (uint16_t)address);
    return;
  }
  /* The engine stores "every instruction" as int -1 but its remover takes a
   * uint16_t, so it can never match; unlink those entries here. */
  TsBreakpoint** pp = &vm->pBreakpoints;
  while (*pp) {
    TsBreakpoint* bp = *pp;
    if (bp->bytecodeAddress == address) {
      *pp = bp->next;
      vm_free(vm, bp);
    } else {
      pp = &bp->next;
    }
  }
}
MVX_API(mvx_current_address) int32_t mvx_current_address(void) { return mvm_getCurrentAddress(vm); }
MVX_EXPORT(mvx_noop) void mvx_noop(void) {}

/* ---- host functions as values ---- */

/* The import ID behind a host-function value, or -1 if it is not one. */
MVX_API(mvx_host_func_id) int32_t mvx_host_func_id(int32_t value) {
  if (deepTypeOf(vm, (mvm_Value)value) != TC_REF_HOST_FUNC) return -1;
  LongPtr lp = DynamicPtr_decode_long(vm, (mvm_Value)value);
  uint16_t index = READ_FIELD_2(lp, TsHostFunc, indexInImportTable);
  return vm_getHostFunctionId(vm, index);
}

/* A new host-function value for import `id`, or -1 if the snapshot does not
 * import that ID (the engine can only call entries of its import table). */
MVX_API(mvx_new_host_func) int32_t mvx_new_host_func(uint32_t id) {
  uint16_t count = getSectionSize(vm, BCS_IMPORT_TABLE) / sizeof(vm_TsImportTableEntry);
  for (uint16_t i = 0; i < count; i++) {
    if (vm_getHostFunctionId(vm, i) == id) {
      TsHostFunc* p = GC_ALLOCATE_TYPE(vm, TsHostFunc, TC_REF_HOST_FUNC);
      p->indexInImportTable = i;
      return ShortPtr_encode(vm, p);
    }
  }
  return -1;
}

/* ---- references that survive a snapshot ---- */

/*
 * Snapshots copy the heap verbatim, so an object the host holds (a pending
 * async continuation, a promise it awaits) is in the snapshot even when no
 * guest global reaches it.  The host records such objects by heap offset and,
 * right after restoring (before anything can collect), turns the offsets back
 * into values.  Returns the offset, or -1 for a value that is not in the heap.
 */
MVX_API(mvx_heap_offset) int32_t mvx_heap_offset(int32_t value) {
  if (!Value_isShortPtr((Value)value)) return -1;
  uint8_t* p = ShortPtr_decode(vm, (Value)value);
  for (TsBucket* bucket = vm->pLastBucket; bucket; bucket = bucket->prev) {
    uint8_t* begin = (uint8_t*)getBucketDataBegin(bucket);
    if (p >= begin && p < (uint8_t*)bucket->pEndOfUsedSpace) {
      return (int32_t)(bucket->offsetStart + (uint16_t)(p - begin));
    }
  }
  return -1;
}

/* The value at heap offset `offset` of a VM freshly restored (one bucket). */
MVX_API(mvx_value_at_offset) int32_t mvx_value_at_offset(uint32_t offset) {
  TsBucket* bucket = vm->pLastBucket;
  if (!bucket || bucket->prev || offset >= getBucketOffsetEnd(bucket)) return -1;
  return ShortPtr_encode(vm, (uint8_t*)getBucketDataBegin(bucket) + offset);
}

#ifndef MVX_NATIVE
/* One export for everything off the hot path; op numbers are part of the host
 * ABI (mvactors/vm/_abi.py, Op). Float parameters/results travel in mvx.f64. */
MVX_EXPORT(mvx_op) int32_t mvx_op(int32_t op, int32_t a, int32_t b, int32_t c) {
  switch (op) {
    case MVX_OP_LAYOUT: return (int32_t)mvx_layout(a);
    case MVX_OP_RESTORE: return mvx_restore((uint32_t)a, b);
    case MVX_OP_FREE_VM: mvx_free_vm(); return 0;
    case MVX_OP_LINK_HANDLES: return mvx_link_handles((uint32_t)a);
    case MVX_OP_EXPORT: return mvx_export((uint32_t)a);
    case MVX_OP_GET: return mvx_get((uintptr_t)a, (uintptr_t)b);
    case MVX_OP_SET: return mvx_set((uintptr_t)a, (uintptr_t)b, (uintptr_t)c);
    case MVX_OP_KEYS: return mvx_keys((uintptr_t)a);
    case MVX_OP_NEW_NUMBER: return mvx_new_number(mvx.f64);
    case MVX_OP_NEW_STRING: return mvx_new_string((uint32_t)a);
    case MVX_OP_NEW_BYTES: return mvx_new_bytes((uint32_t)a);
    case MVX_OP_NEW_ARRAY: return mvx_new_array((uint32_t)a);
    case MVX_OP_NEW_OBJECT: return mvx_new_object();
    case MVX_OP_TYPE_OF: return mvx_type_of(a);
    case MVX_OP_TO_NUMBER: mvx.f64 = mvx_to_number(a); return 0;
    case MVX_OP_EQUAL: return mvx_equal(a, b);
    case MVX_OP_STRING: return (int32_t)mvx_string(a);
    case MVX_OP_BYTES: return (int32_t)mvx_bytes(a);
    case MVX_OP_PROMISE_STATE: return mvx_promise_state(a);
    case MVX_OP_SNAPSHOT: return mvx_snapshot();
    case MVX_OP_GC: mvx_gc(a); return 0;
    case MVX_OP_MEMORY_STATS: mvx_memory_stats(); return 0;
    case MVX_OP_SET_GAS: mvx_set_gas(a); return 0;
    case MVX_OP_GET_GAS: return mvx_get_gas();
    case MVX_OP_SET_BREAKPOINT: mvx_set_breakpoint(a); return 0;
    case MVX_OP_REMOVE_BREAKPOINT: mvx_remove_breakpoint(a); return 0;
    case MVX_OP_CURRENT_ADDRESS: return mvx_current_address();
    case MVX_OP_HOST_FUNC_ID: return mvx_host_func_id(a);
    case MVX_OP_NEW_HOST_FUNC: return mvx_new_host_func((uint32_t)a);
    case MVX_OP_CALL_THIS: return mvx_call_this((uint32_t)a);
    case MVX_OP_HEAP_INFO: return (int32_t)mvx_heap_info(a);
    case MVX_OP_HEAP_OFFSET: return mvx_heap_offset(a);
    case MVX_OP_VALUE_AT_OFFSET: return mvx_value_at_offset((uint32_t)a);
    default: return -1;
  }
}
#endif

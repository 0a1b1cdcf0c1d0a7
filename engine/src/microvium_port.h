/*
 * mvactors' port of the Microvium engine.
 *
 * One Microvium VM lives in one WebAssembly instance (or, in the native
 * reference build, in one process-wide slot).  Every engine allocation comes
 * from a single 64 KB-aligned RAM page so that 16-bit Microvium pointers
 * decode with a single OR (MVM_USE_SINGLE_RAM_PAGE).
 */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <math.h>

#define MVM_PORT_VERSION 1

/* The VM stack is carved from the RAM page; 1 KB allows ~100-deep guest recursion. */
#define MVM_STACK_SIZE 1024
#define MVM_ALLOCATION_BUCKET_SIZE 256

/*
 * The GC copies live objects to a fresh space, so at its peak the page holds
 * two heaps plus the stack, VM struct and handles.  0x7400 is the largest heap
 * for which that peak still fits in 64 KB.
 */
#define MVM_MAX_HEAP_SIZE 0x7400

#define MVM_NATIVE_POINTER_IS_16_BIT 0
#define MVM_SUPPORT_FLOAT 1
#define MVM_FLOAT64 double
#define MVM_FLOAT64_NAN ((MVM_FLOAT64)(__builtin_nan("")))

/* The compiler evaluates with int32 overflow checks; results must match it. */
#define MVM_PORT_INT32_OVERFLOW_CHECKS 1

#define MVM_SAFE_MODE 0
#define MVM_DONT_TRUST_BYTECODE 0
#define MVM_VERY_EXPENSIVE_MEMORY_CHECKS 0

#define MVM_LONG_PTR_TYPE void*
#define MVM_LONG_PTR_NEW(p) ((MVM_LONG_PTR_TYPE)p)
#define MVM_LONG_PTR_TRUNCATE(p) ((void*)p)
#define MVM_LONG_PTR_ADD(p, s) ((MVM_LONG_PTR_TYPE)((uint8_t*)p + (intptr_t)s))
#define MVM_LONG_PTR_SUB(p2, p1) ((int16_t)((uint8_t*)p2 - (uint8_t*)p1))
#define MVM_READ_LONG_PTR_1(lpSource) (*((uint8_t *)lpSource))
#define MVM_READ_LONG_PTR_2(lpSource) (*((uint16_t *)lpSource))
#define MVM_LONG_MEM_CMP(p1, p2, size) memcmp(p1, p2, size)
#define MVM_LONG_MEM_CPY(target, source, size) memcpy(target, source, size)

/*
 * Fatal errors (out of memory, async without await, ...) must not return.  The
 * glue records the code and traps; the host then discards the instance.
 */
void mvx_fatal(int code) __attribute__((noreturn));
#define MVM_FATAL_ERROR(vm, e) mvx_fatal(e)

/*
 * What the engine is doing, for the host's account of a fatal error (see
 * mvx_fatal): mvm_runGC (patched, engine/build.py) brackets every collection,
 * automatic ones inside guest calls included, with these.
 */
uint32_t mvx_phase_enter_gc(uint16_t heapUsed);
void mvx_phase_leave(uint32_t outer);

/*
 * Walks along chains of allocations (a property list's cells and prototypes, a closure's
 * targets, scopes) visit each allocation once on a sound heap; a corrupt snapshot can make
 * a chain a cycle, which the engine would walk inside one instruction until the hard stop
 * ended the call (engine/build.py patches each walk).
 * Allocations take 4 bytes or more of the 64 KB RAM page or the 64 KB ROM, so a walk of
 * more than 32,768 steps is a cycle: fatal, like other corruption the engine finds.
 */
#define MVX_MAX_WALK 0x8000u
#define MVX_WALK_STEP(steps) do { if (++(steps) > MVX_MAX_WALK) mvx_fatal(MVM_E_INVALID_BYTECODE); } while (0)

/* Recoverable errors unwind and return codes so the VM stays usable. */
#define MVM_ALL_ERRORS_FATAL 0

#define MVM_SWITCH(tag, upper) switch (tag)
#define MVM_CASE(value) case value

uint16_t mvx_crc16(void* data, uint16_t size);
#define MVM_CHECK_CRC16_CCITT(lpData, size, expected) (mvx_crc16(lpData, size) == (expected))
#define MVM_CALC_CRC16_CCITT(pData, size) (mvx_crc16(pData, size))

#define MVM_INCLUDE_SNAPSHOT_CAPABILITY 1
#define MVM_INCLUDE_DEBUG_CAPABILITY 1
#define MVM_GAS_COUNTER

/* The host needs property get/set, object keys and promise internals. */
#define MVM_EXPOSE_INTERNALS 1

#define MVM_USE_SINGLE_RAM_PAGE 1
extern uint8_t mvx_ram_page[65536];
#define MVM_RAM_PAGE_ADDR ((intptr_t)mvx_ram_page)

/*
 * The wasm build (32-bit pointers) pads each engine structure it allocates from the RAM page to
 * its size in the native reference build (64-bit pointers), so the two builds lay out the page
 * identically: running out of page space (MVM_E_MALLOC_FAIL, only a heap near the limit can) then
 * happens at the same step on both, which tests/test_gc_property.py requires.  Without it a
 * native GC with ~26 KB live died where the wasm one, with 16 bytes less per bucket, did not.
 * glue.c asserts these sizes against the real structures of each build.
 */
#define MVX_LP64_SIZEOF_VM 88
#define MVX_LP64_SIZEOF_BUCKET 32
#define MVX_LP64_SIZEOF_STACK 48
#define MVX_LP64_SIZEOF_BREAKPOINT 16
#ifdef MVX_NATIVE
#define MVX_LP64_PAD(type, lp64Size) 0
#else
#define MVX_LP64_PAD(type, lp64Size) ((lp64Size) - sizeof (type))
#endif
#define MVX_BUCKET_PAD MVX_LP64_PAD(TsBucket, MVX_LP64_SIZEOF_BUCKET)

void* mvx_malloc(size_t size);
void mvx_free(void* ptr);
#define MVM_CONTEXTUAL_MALLOC(size, context) mvx_malloc(size)
#define MVM_CONTEXTUAL_FREE(ptr, context) mvx_free(ptr)
#define MVM_MALLOC(size) mvx_malloc(size)
#define MVM_FREE(ptr) mvx_free(ptr)

int mvx_snprintf(char* buf, size_t size, const char* format, ...);
#define MVM_SNPRINTF mvx_snprintf

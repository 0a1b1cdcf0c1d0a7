/*
 * Functions the glue needs from the Python host.  In the WebAssembly build they
 * are module imports; in the native reference build the host registers
 * function pointers at load time.
 */
#pragma once
#include <stdint.h>

#ifdef MVX_NATIVE
typedef int32_t (*mvh_call_t)(uint32_t cookie, uint32_t id, uintptr_t args, uint32_t argc, uintptr_t result, uint32_t is_async);
typedef void (*mvh_breakpoint_t)(uint32_t cookie, uint32_t address);
extern mvh_call_t mvh_call;
extern mvh_breakpoint_t mvh_breakpoint;
#else
#define MVX_IMPORT(name) __attribute__((import_module("mvh"), import_name(#name)))
/* A guest call of host import `cookie_and_id & 0xFFFF` from the instance with
 * cookie `cookie_and_id >> 16` (32 bits: more than 65,535 instances may be live);
 * the call's details are in mvx.call_*.  Returns an mvm_TeError. */
MVX_IMPORT(call) int32_t mvh_call(uint64_t cookie_and_id);
MVX_IMPORT(breakpoint) void mvh_breakpoint(uint32_t cookie, uint32_t address);
/* C and JavaScript agree on these; Python's math module raises instead. */
MVX_IMPORT(fmod) double mvh_fmod(double x, double y);
MVX_IMPORT(pow) double mvh_pow(double x, double y);
/* Writes "%.15g" of x into buf (at most 32 bytes); returns the length. */
MVX_IMPORT(format_double) int32_t mvh_format_double(uint32_t cookie, double x, uintptr_t buf);
#endif

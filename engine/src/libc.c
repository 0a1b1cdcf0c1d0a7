/* The few C library functions the engine uses, for the freestanding wasm build. */
#include <stddef.h>
#include <stdint.h>
#include "host.h"

void* memcpy(void* dst, const void* src, size_t n) {
  __builtin_memcpy(dst, src, n); /* lowered to memory.copy by -mbulk-memory */
  return dst;
}
void* memmove(void* dst, const void* src, size_t n) {
  __builtin_memmove(dst, src, n);
  return dst;
}
void* memset(void* dst, int c, size_t n) {
  __builtin_memset(dst, c, n);
  return dst;
}
int memcmp(const void* a, const void* b, size_t n) {
  const uint8_t* x = a;
  const uint8_t* y = b;
  for (size_t i = 0; i < n; i++) {
    if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
  }
  return 0;
}
size_t strlen(const char* s) {
  size_t n = 0;
  while (s[n]) n++;
  return n;
}
int strcmp(const char* a, const char* b) {
  while (*a && *a == *b) { a++; b++; }
  return (uint8_t)*a - (uint8_t)*b;
}
double fmod(double x, double y) { return mvh_fmod(x, y); }
double pow(double x, double y) { return mvh_pow(x, y); }


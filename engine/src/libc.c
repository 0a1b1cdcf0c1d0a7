/* The few C library functions the engine uses, for the freestanding wasm build. */
#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>
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

/* The engine formats only "%d" (PRId32) and "%.15g". */
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
    n = mvh_format_double(d, (uintptr_t)buf);
    buf[n] = 0;
  }
  va_end(ap);
  (void)size;
  return n;
}

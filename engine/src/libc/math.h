#pragma once
#define INFINITY (__builtin_inf())
#define NAN (__builtin_nan(""))
#define isnan(x) __builtin_isnan(x)
#define isinf(x) __builtin_isinf(x)
#define isfinite(x) __builtin_isfinite(x)
#define signbit(x) __builtin_signbit(x)
double fmod(double x, double y);
double pow(double x, double y);
static inline double floor(double x) { return __builtin_floor(x); }
static inline double trunc(double x) { return __builtin_trunc(x); }

#pragma once
#include <stddef.h>
int snprintf(char* buf, size_t size, const char* format, ...);

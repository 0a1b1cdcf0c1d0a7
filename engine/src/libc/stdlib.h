#pragma once
#include <stddef.h>
void* malloc(size_t size);
void free(void* ptr);
void exit(int code) __attribute__((noreturn));

#pragma once
#include <stdint.h>
#define PRId32 "d"

// Freestanding memory/string primitives (kernel build only; host tests use libc).
#pragma once
#include <stddef.h>

extern "C" {
void* memcpy(void* dst, const void* src, size_t n);
void* memmove(void* dst, const void* src, size_t n);
void* memset(void* dst, int c, size_t n);
int memcmp(const void* a, const void* b, size_t n);
size_t strlen(const char* s);
}

namespace bf::kern {
int kstrcmp(const char* a, const char* b);
size_t kstrlcpy(char* dst, const char* src, size_t cap);
}  // namespace bf::kern

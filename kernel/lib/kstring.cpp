// rep movsb/stosb: fast on every x86-64 with ERMSB, and written in asm so the compiler cannot turn
// them back into calls to themselves.
#include "kernel/lib/kstring.h"

#include <stdint.h>

extern "C" {

void* memcpy(void* dst, const void* src, size_t n) {
  void* d = dst;
  asm volatile("rep movsb" : "+D"(d), "+S"(src), "+c"(n) : : "memory");
  return dst;
}

void* memmove(void* dst, const void* src, size_t n) {
  if (dst == src || n == 0) return dst;
  if (uintptr_t(dst) < uintptr_t(src) || uintptr_t(dst) >= uintptr_t(src) + n) return memcpy(dst, src, n);
  // Overlapping with dst above src: copy backwards.
  auto* d = static_cast<unsigned char*>(dst) + n - 1;
  auto* s = static_cast<const unsigned char*>(src) + n - 1;
  asm volatile("std; rep movsb; cld" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
  return dst;
}

void* memset(void* dst, int c, size_t n) {
  void* d = dst;
  asm volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
  return dst;
}

int memcmp(const void* a, const void* b, size_t n) {
  auto* x = static_cast<const unsigned char*>(a);
  auto* y = static_cast<const unsigned char*>(b);
  for (size_t i = 0; i < n; ++i)
    if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
  return 0;
}

size_t strlen(const char* s) {
  size_t n = 0;
  while (s[n]) ++n;
  return n;
}

}  // extern "C"

namespace bf::kern {

int kstrcmp(const char* a, const char* b) {
  while (*a && *a == *b) ++a, ++b;
  return (unsigned char)*a - (unsigned char)*b;
}

size_t kstrlcpy(char* dst, const char* src, size_t cap) {
  size_t n = 0;
  if (cap == 0) return 0;
  while (n + 1 < cap && src[n]) dst[n] = src[n], ++n;
  dst[n] = 0;
  return n;
}

}  // namespace bf::kern

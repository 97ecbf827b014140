// Kernel log: printf-style formatting (%s %c %d %u %x %p, l/ll, width, 0-pad) onto the console.
#pragma once
#include <stdarg.h>
#include <stddef.h>

namespace bf::kern {

// Formats into buf (always NUL-terminated); returns the length written.
size_t kvsnprintf(char* buf, size_t cap, const char* fmt, va_list ap);
size_t ksnprintf(char* buf, size_t cap, const char* fmt, ...) __attribute__((format(printf, 3, 4)));
// One line on the kernel console, prefixed with "[bf] ".
void klog(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
// Reports the failure and exits QEMU with the panic status. Never returns.
[[noreturn]] void panic(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

#define KASSERT(cond) \
  do { \
    if (!(cond)) ::bf::kern::panic("assertion failed: %s at %s:%d", #cond, __FILE__, __LINE__); \
  } while (0)

}  // namespace bf::kern

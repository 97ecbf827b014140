// 16550 UARTs. COM1 is the kernel console (kernel log + the application's stderr); COM2, when the
// machine has one, carries the application's stdout alone so that it stays byte-exact. Without COM2
// stdout falls back to COM1.
#pragma once
#include <stddef.h>
#include <stdint.h>

namespace bf::kern::serial {

enum class Port { kConsole, kStdout };

void init();
bool has_stdout_port();
void write(Port p, const char* s, size_t n);
inline void puts(const char* s) {
  size_t n = 0;
  while (s[n]) ++n;
  write(Port::kConsole, s, n);
}

}  // namespace bf::kern::serial

// Leaving the machine. QEMU's isa-debug-exit device (iobase 0xf4) turns a write of v into the QEMU
// process exit status (v << 1) | 1; the kernel also prints "[bf] exit N" so that a runner recovers
// the exact status (bareflow boot does).
#pragma once
#include <stdint.h>

namespace bf::kern {

constexpr int kExitPanic = 255;     // kernel panic, bad boot input
[[noreturn]] void machine_exit(int status);

}  // namespace bf::kern

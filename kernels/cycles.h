// The time base of the forward pass's call stamps, the profiler and the JIT's tier counters: the
// CPU's time-stamp counter. In kernels/, the bottom layer, so that every layer above can use it.
// Inline so that the forward pass can stamp calls without a function call.
#pragma once

#include <cstdint>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#else
#include <chrono>
#endif

namespace bf::prof {

// Invariant TSC ticks on x86 (constant rate, cheap: ~20 cycles); nanoseconds elsewhere.
inline uint64_t cycles() {
#if defined(__x86_64__) || defined(__i386__)
  return __rdtsc();
#else
  return uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                      std::chrono::steady_clock::now().time_since_epoch())
                      .count());
#endif
}

// Ticks per second of cycles(), measured once against the steady clock (~20 ms, on first use).
double cycles_per_second();

}  // namespace bf::prof

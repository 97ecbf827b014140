#include "kernels/cycles.h"

#include <chrono>
#include <thread>

namespace bf::prof {

double cycles_per_second() {
  static const double hz = [] {
    using Clock = std::chrono::steady_clock;
    const Clock::time_point t0 = Clock::now();
    const uint64_t c0 = cycles();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const uint64_t c1 = cycles();
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    return secs > 0 && c1 > c0 ? double(c1 - c0) / secs : 1e9;
  }();
  return hz;
}

}  // namespace bf::prof

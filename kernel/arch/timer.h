// Time: the TSC, calibrated once against the PIT (channel 2, else channel 0), plus the CMOS RTC read once at boot for
// wall-clock time. No timer interrupt: the application is the only task.
#pragma once
#include <stdint.h>

namespace bf::kern {

void timer_init();
uint64_t tsc_hz();
uint64_t monotonic_ns();   // since boot
uint64_t realtime_ns();    // Unix epoch

}  // namespace bf::kern

#include "kernel/arch/timer.h"

#include "kernel/arch/x86.h"
#include "kernel/lib/log.h"

namespace bf::kern {
namespace {

uint64_t g_tsc0 = 0, g_hz = 0, g_mult = 0;  // ns = ticks * g_mult >> 32
uint64_t g_epoch_ns = 0;

uint64_t calibrate_pit() {
  // PIT channel 2 in mode 0 counts 11932 ticks of 1.193182 MHz = 10 ms; the gate bit in port
  // 0x61 starts it and bit 5 reads its output going high at the end.
  constexpr uint32_t kTicks = 11932;
  x86::outb(0x61, uint8_t((x86::inb(0x61) & ~0x02) | 0x01));
  x86::outb(0x43, 0xB0);
  x86::outb(0x42, kTicks & 0xFF);
  x86::outb(0x42, kTicks >> 8);
  x86::outb(0x61, uint8_t(x86::inb(0x61) & ~0x01));  // restart the count with a gate edge
  x86::outb(0x61, uint8_t(x86::inb(0x61) | 0x01));
  const uint64_t t0 = x86::rdtsc();
  uint32_t spins = 0;
  while (!(x86::inb(0x61) & 0x20) && spins < 50000000) ++spins;
  const uint64_t t1 = x86::rdtsc();
  if (spins >= 50000000 || t1 <= t0) return 0;
  return (t1 - t0) * 1193182 / kTicks;
}

uint32_t pit0_read() {
  x86::outb(0x43, 0x00);  // latch channel 0
  const uint32_t lo = x86::inb(0x40);
  return lo | (uint32_t(x86::inb(0x40)) << 8);
}

uint64_t calibrate_pit0() {
  // Machines without the port-0x61 gate (QEMU microvm): run channel 0 as a free-running
  // 65536-tick rate generator and poll its count for 10 ms (shorter than one period, so at most
  // one wrap).
  constexpr uint32_t kTicks = 11932;
  x86::outb(0x43, 0x34);
  x86::outb(0x40, 0);
  x86::outb(0x40, 0);
  const uint32_t c0 = pit0_read();
  const uint64_t t0 = x86::rdtsc();
  uint32_t elapsed = 0;
  for (uint32_t spins = 0; spins < 50000000; ++spins) {
    elapsed = (c0 - pit0_read() + 65536) % 65536;
    if (elapsed >= kTicks) break;
  }
  const uint64_t t1 = x86::rdtsc();
  if (elapsed < kTicks || t1 <= t0) return 0;
  return (t1 - t0) * 1193182 / elapsed;
}

uint8_t cmos(uint8_t reg) {
  x86::outb(0x70, reg);
  return x86::inb(0x71);
}

uint64_t read_rtc_epoch() {
  for (int i = 0; i < 1000000 && (cmos(0x0A) & 0x80); ++i) {  // wait out an update in progress
  }
  uint32_t sec = cmos(0), min = cmos(2), hour = cmos(4), day = cmos(7), mon = cmos(8), year = cmos(9);
  const uint8_t b = cmos(0x0B);
  auto bcd = [](uint32_t v) { return (v & 0x0F) + (v >> 4) * 10; };
  if (!(b & 0x04)) {
    sec = bcd(sec), min = bcd(min), hour = bcd(hour & 0x7F) | (hour & 0x80), day = bcd(day), mon = bcd(mon), year = bcd(year);
  }
  if (!(b & 0x02) && (hour & 0x80)) hour = ((hour & 0x7F) + 12) % 24;
  year += 2000;
  // Days from civil (Howard Hinnant's algorithm).
  const int y = int(year) - (mon <= 2);
  const int era = y / 400;
  const unsigned yoe = unsigned(y - era * 400);
  const unsigned doy = (153 * (mon + (mon > 2 ? -3 : 9)) + 2) / 5 + day - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  const int64_t days = int64_t(era) * 146097 + doe - 719468;
  return uint64_t(days * 86400 + hour * 3600 + min * 60 + sec);
}

}  // namespace

void timer_init() {
  g_tsc0 = x86::rdtsc();
  g_hz = calibrate_pit();
  if (g_hz < 100000000) g_hz = calibrate_pit0();  // no channel-2 gate: implausible or no result
  if (g_hz < 100000000) {
    klog("timer: PIT calibration failed (%lu Hz), assuming a 2 GHz TSC", g_hz);
    g_hz = 2000000000;
  }
  g_mult = (1000000000ull << 32) / g_hz;
  g_epoch_ns = read_rtc_epoch() * 1000000000ull;
}

uint64_t tsc_hz() { return g_hz; }

uint64_t monotonic_ns() {
  const uint64_t d = x86::rdtsc() - g_tsc0;
  return uint64_t((unsigned __int128)d * g_mult >> 32);
}

uint64_t realtime_ns() { return g_epoch_ns + monotonic_ns(); }


}  // namespace bf::kern

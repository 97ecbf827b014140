#include "kernel/arch/serial.h"

#include "kernel/arch/x86.h"

namespace bf::kern::serial {
namespace {

constexpr uint16_t kCom1 = 0x3F8;
constexpr uint16_t kCom2 = 0x2F8;
bool g_com2 = false;

bool probe_and_init(uint16_t base) {
  // The scratch register reads back what was written only if a UART is there.
  x86::outb(base + 7, 0x5A);
  if (x86::inb(base + 7) != 0x5A) return false;
  x86::outb(base + 1, 0x00);  // no interrupts: the kernel polls
  x86::outb(base + 3, 0x80);  // DLAB
  x86::outb(base + 0, 0x01);  // divisor 1: 115200 baud
  x86::outb(base + 1, 0x00);
  x86::outb(base + 3, 0x03);  // 8N1
  x86::outb(base + 2, 0xC7);  // FIFO on, cleared
  x86::outb(base + 4, 0x03);  // DTR, RTS
  return true;
}

// Waits (bounded: a stuck UART must not hang the kernel) until the transmit FIFO is empty, then
// hands it up to its 16 bytes with one string instruction: under KVM that is one exit to the
// hypervisor per 16 bytes instead of two per byte (a poll and a write), which a token's write
// otherwise pays on every decode step.
void put16(uint16_t base, const char* s, size_t n) {
  for (uint32_t i = 0; i < 1000000 && !(x86::inb(base + 5) & 0x20); ++i) {
  }
  asm volatile("rep outsb" : "+S"(s), "+c"(n) : "d"(base) : "memory");
}

}  // namespace

void init() {
  probe_and_init(kCom1);
  g_com2 = probe_and_init(kCom2);
}

bool has_stdout_port() { return g_com2; }

void write(Port p, const char* s, size_t n) {
  const uint16_t base = (p == Port::kStdout && g_com2) ? kCom2 : kCom1;
  constexpr size_t kFifo = 16;  // 16550A, enabled by probe_and_init
  for (size_t i = 0; i < n; i += kFifo) put16(base, s + i, n - i < kFifo ? n - i : kFifo);
}

}  // namespace bf::kern::serial

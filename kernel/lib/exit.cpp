#include "kernel/lib/exit.h"

#include "kernel/arch/x86.h"
#include "kernel/lib/log.h"

namespace bf::kern {

void machine_exit(int status) {
  klog("exit %d", status);
  x86::outl(0xf4, uint32_t(status & 0xff));
  // No debug-exit device (real hardware, other VMMs): try ACPI poweroff of QEMU's PIIX4/ICH9, then halt.
  x86::outw(0x604, 0x2000);
  x86::outw(0xB004, 0x2000);
  x86::halt_forever();
}

}  // namespace bf::kern

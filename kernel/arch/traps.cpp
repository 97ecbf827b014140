// Exception reporting. A fault in ring 3 is the application's: it is reported like a Linux
// crash (signal, RIP, CR2, error code, a frame-pointer stack trace read through checked user
// accesses) and the machine exits with status 128 + signal. A fault in ring 0 is a kernel panic.
#include "kernel/app/loader.h"
#include "kernel/arch/cpu.h"
#include "kernel/arch/x86.h"
#include "kernel/lib/exit.h"
#include "kernel/lib/log.h"
#include "kernel/lib/layout.h"
#include "kernel/mm/vm.h"
#include "kernel/sched/sched.h"
#include "kernel/syscall/syscall.h"
#include "kernel/syscall/uaccess.h"

extern "C" char kernel_stack[], kernel_stack_top[];
extern "C" char syscall_quirk_ud2[];

namespace bf::kern {
namespace {

const char* const kNames[32] = {
    "divide error", "debug", "NMI", "breakpoint", "overflow", "bound range", "invalid opcode",
    "device not available", "double fault", "coprocessor overrun", "invalid TSS", "segment not present",
    "stack fault", "general protection", "page fault", "reserved", "x87 floating point", "alignment check",
    "machine check", "SIMD floating point", "virtualization", "control protection", "reserved", "reserved",
    "reserved", "reserved", "reserved", "reserved", "hypervisor injection", "VMM communication",
    "security", "reserved"};

int signal_for(uint64_t v) {
  switch (v) {
    case 0: case 16: case 19: return 8;  // SIGFPE
    case 1: case 3: return 5;            // SIGTRAP
    case 6: return 4;                    // SIGILL
    case 17: return 7;                   // SIGBUS
    default: return 11;                  // SIGSEGV
  }
}

void report(const TrapFrame* f, const char* who) {
  const uint64_t cr2 = x86::read_cr2();
  klog("%s: %s (vector %lu) at rip=0x%lx error=0x%lx cr2=0x%lx", who, f->vector < 32 ? kNames[f->vector] : "interrupt",
       f->vector, f->rip, f->error, cr2);
  klog("  rax=0x%lx rbx=0x%lx rcx=0x%lx rdx=0x%lx rsi=0x%lx rdi=0x%lx", f->rax, f->rbx, f->rcx, f->rdx, f->rsi, f->rdi);
  klog("  rsp=0x%lx rbp=0x%lx r8=0x%lx r9=0x%lx r11=0x%lx rflags=0x%lx cs=0x%lx ss=0x%lx", f->rsp, f->rbp, f->r8,
       f->r9, f->r11, f->rflags, f->cs, f->ss);
  if (f->vector == 14)
    klog("  page fault: %s %s in %s mode", (f->error & 1) ? "protection violation" : "page not present",
         (f->error & 16) ? "on instruction fetch" : (f->error & 2) ? "on write" : "on read",
         (f->error & 4) ? "user" : "kernel");
}

bool in_kernel_stack(uint64_t p) {
  return p >= uint64_t(kernel_stack) && p + 16 <= uint64_t(kernel_stack_top);
}

}  // namespace
}  // namespace bf::kern

using namespace bf::kern;

namespace {

// A system call from either entry (syscall_entry's frame, or the #UD of the KVM workaround).
void do_syscall(TrapFrame* f) {
  SyscallFrame sf{f->rax, f->rdi, f->rsi, f->rdx, f->r10, f->r8, f->r9, f->rcx, f->r11, f->rsp};
  g_syscall_trap_frame = f;
  const int64_t r = syscall_dispatch(&sf);
  if (r != kBlocked) f->rax = uint64_t(r);
  if (f->rcx >= kUserTop) {
    klog("application fault: system call return to bad address 0x%lx", f->rcx);
    machine_exit(128 + 11);
  }
  // Return to RCX with RFLAGS from R11, as sysret does.
  f->rip = f->rcx;
  f->rflags = (f->r11 & ~0x23000ull) | 0x202;  // IOPL 0, no VM86, IF on
  sched_return(f, false);
}

}  // namespace

extern "C" void trap_dispatch(TrapFrame* f) {
  if (f->vector == 0x100) return do_syscall(f);
  if (f->vector >= 32 && f->vector < 48) {
    // IRQ 0 is the scheduler's tick (unmasked only while threads compete); anything else is a
    // spurious legacy-PIC interrupt. Acknowledge either.
    if (f->vector >= 40) x86::outb(0xA0, 0x20);
    x86::outb(0x20, 0x20);
    if (f->vector == 32 && (f->cs & 3) == 3) sched_return(f, true);
    return;
  }
  if ((f->cs & 3) == 3 && f->vector == 6 && f->rip == uint64_t(syscall_quirk_ud2) && g_user_entry) {
    // A system call that SYSCALL left in ring 3 (syscall/entry.cpp).
    return do_syscall(f);
  }
  if ((f->cs & 3) == 3) {
    report(f, "application fault");
    // Frame-pointer walk of the user stack, every read checked (the application may be compiled
    // without frame pointers; the walk then stops early, it never faults).
    klog("  user stack trace:");
    klog("    #0 0x%lx%s", f->rip, app_symbol(f->rip, false));
    uint64_t fp = f->rbp;
    for (int i = 1; i < 16 && user_range_ok(vm_tables(), fp, 16, Access::kRead) && !(fp & 7); ++i) {
      const uint64_t* frame = reinterpret_cast<const uint64_t*>(fp);
      if (frame[1] == 0) break;
      klog("    #%d 0x%lx%s", i, frame[1], app_symbol(frame[1], true));
      if (frame[0] <= fp) break;
      fp = frame[0];
    }
    machine_exit(128 + signal_for(f->vector));
  }
  report(f, "KERNEL PANIC");
  klog("  kernel stack trace:");
  klog("    #0 0x%lx", f->rip);
  uint64_t fp = f->rbp;
  for (int i = 1; i < 16 && in_kernel_stack(fp); ++i) {
    const uint64_t* frame = reinterpret_cast<const uint64_t*>(fp);
    klog("    #%d 0x%lx", i, frame[1]);
    if (frame[0] <= fp) break;
    fp = frame[0];
  }
  machine_exit(kExitPanic);
}

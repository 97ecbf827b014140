// The Linux x86-64 system-call layer.
#pragma once
#include <stdint.h>

#include "kernel/arch/cpu.h"

namespace bf::kern {

struct SyscallFrame {
  uint64_t nr, a0, a1, a2, a3, a4, a5;  // rax, rdi, rsi, rdx, r10, r8, r9
  uint64_t rcx, r11, rsp;               // user rip, rflags, rsp
};
static_assert(sizeof(SyscallFrame) == 80);

// The full frame of the system call being served (clone copies the caller's registers from it).
extern TrapFrame* g_syscall_trap_frame;

void syscall_set_trace(bool on);  // log every call and its result ("strace" on the kernel command line)

}  // namespace bf::kern

extern "C" int64_t syscall_dispatch(bf::kern::SyscallFrame* f);

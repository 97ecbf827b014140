// Processor setup: GDT + TSS (with IST stacks), IDT, legacy PIC masked, FPU/SSE/AVX/AVX-512 state
// enabled for ring 3 (the kernel itself never touches vector registers: -mgeneral-regs-only, so no
// state needs saving across system calls), and the syscall/sysret MSRs.
#pragma once
#include <stdint.h>

namespace bf::kern {

// Segment selectors: GDT byte offset | requested privilege level. Their order is the one SYSCALL
// and SYSRET require (cpu.cpp asserts it against the GDT): kernel data right after kernel code;
// user data, then user code 64, after a 32-bit user code slot.
constexpr uint16_t kKernelCs = 0x08, kKernelDs = 0x10, kUserDs = 0x20 | 3, kUserCs = 0x28 | 3, kTssSel = 0x30;

struct CpuFeatures {
  char vendor[13];
  bool nx, xsave, avx, avx512, smep, rdrand, pdpe1gb, kvm, apic;
  uint32_t hwcap;  // CPUID.1:EDX, what Linux reports as AT_HWCAP on x86
  uint64_t xcr0;
};

extern CpuFeatures g_cpu;
extern bool g_no_smep;     // "nosmep" on the command line
extern bool g_user_entry;  // syscall entry page mapped user-executable (KVM quirk), SMEP off

void cpu_init();  // everything above; call once on the boot stack
// Puts the local APIC in virtual-wire mode (LINT0 = ExtINT) so that the 8259's IRQ 0 reaches the
// CPU; firmware does this on a PC, QEMU's microvm (qboot) does not. Needs the APIC page mapped
// (vm_init).
void apic_virtual_wire();

// The frame the common interrupt stub builds (from the top of the stack downwards).
struct TrapFrame {
  uint64_t r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx, rax;
  uint64_t vector, error;
  uint64_t rip, cs, rflags, rsp, ss;  // pushed by the CPU
};
static_assert(sizeof(TrapFrame) == 22 * 8);

// Enters ring 3 at rip with rsp; never returns (system calls and faults come back through their
// own entry points).
[[noreturn]] void enter_user(uint64_t rip, uint64_t rsp);

// Enters ring 3 through app/user_stub.cpp: copy len bytes src -> dst, munmap the source view
// [view, view + view_len), then jump to entry with the initial stack rsp.
struct UserCopy {
  uint64_t src, dst, len, entry, view, view_len;
};
static_assert(sizeof(UserCopy) == 48);
[[noreturn]] void enter_user_copy(uint64_t rsp, const UserCopy& c);

}  // namespace bf::kern

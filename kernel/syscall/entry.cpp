// The syscall instruction lands here (IA32_LSTAR) with interrupts off (FMASK), RCX = user RIP and
// R11 = user RFLAGS. One kernel stack serves every entry: the kernel never blocks or takes
// interrupts in ring 0, so entries never nest. The frame saves every user register and the return
// is iretq, which restores them all (Linux preserves everything except RAX, RCX and R11; RCX and
// R11 come back holding RIP and RFLAGS as after sysret).
//
// Nested-KVM quirk (measured on the development machines, see kernel/README.md): there SYSCALL
// loads RIP/RCX/R11 and masks RFLAGS but leaves CS/SS, i.e. the CPU is still in ring 3 at
// syscall_entry. (There, int $n from ring 3 does not reach the kernel either; exceptions do.) For
// that case this page (code only) is mapped user-executable and the entry checks CS: still in
// ring 3, it executes ud2 at syscall_quirk_ud2, and the #UD handler runs the system call and
// returns with iretq to RCX. On a correct CPU the check costs a store, a load and a branch.
#include "kernel/syscall/syscall.h"

asm(R"(
    .section .text.entry, "ax"
    .align 4096
    .globl syscall_entry, syscall_entry_page_end
syscall_entry:
    mov %rax, syscall_scratch(%rip)       # scratch page is user-writable: works in either ring
    mov %cs, %eax
    test $3, %eax
    mov syscall_scratch(%rip), %rax
    jnz 1f
    # Build the same frame an interrupt from ring 3 would (ss, rsp, rflags, cs, rip, error,
    # vector 0x100 = "system call") and share the interrupt path: one frame layout for system
    # calls, faults and the timer, so the scheduler can switch threads at any return to ring 3.
    mov %rsp, syscall_user_rsp(%rip)
    mov $kernel_stack_top, %rsp
    pushq $user_ss_selector              # the selectors come from arch/cpu.cpp
    pushq syscall_user_rsp(%rip)
    push %r11
    pushq $user_cs_selector
    push %rcx
    pushq $0
    pushq $0x100
    jmp isr_common
1:  .globl syscall_quirk_ud2
syscall_quirk_ud2:
    ud2                                   # -> #UD, handled as a system call (arch/traps.cpp)
    .align 4096
syscall_entry_page_end:

    .section .data.entry, "aw"
    .align 4096
syscall_scratch: .quad 0
    .align 4096
    .globl syscall_scratch_page
    .set syscall_scratch_page, syscall_scratch

    .bss
    .align 8
syscall_user_rsp: .quad 0
    .text
)");

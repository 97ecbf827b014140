// The first instructions the application runs, in ring 3, before its ELF entry point: copy the
// writable data segment from a read-only view of the boot module into place, drop that view with
// munmap, clear the registers and jump to the entry. Copying in ring 3 instead of ring 0 matters
// under nested virtualization, where ring 0 is emulated instruction by instruction (a 2 MiB copy
// took 2.6 s there). The page is mapped user-executable and read-only; it holds nothing else.
//
// In: rsi = source, rdi = destination, rcx = bytes, rdx = entry, r8/r9 = view to unmap, rsp = the
// initial process stack.
asm(R"(
    .section .text.user_stub, "ax"
    .align 4096
    .globl user_start_stub
user_start_stub:
    cld
    rep movsb
    mov %rdx, %r12
    mov $11, %eax
    mov %r8, %rdi
    mov %r9, %rsi
    syscall
    mov %r12, %rax
    xor %edx, %edx
    xor %ecx, %ecx
    xor %esi, %esi
    xor %edi, %edi
    xor %r8d, %r8d
    xor %r9d, %r9d
    xor %r11d, %r11d
    xor %r12d, %r12d
    jmp *%rax

    # Thread switch under the KVM workaround (sched/sched.cpp), where ring 0 cannot run XSAVE: the
    # kernel returns here with rdi = the outgoing thread's save area (0 if it exited), rsi = the
    # incoming thread's area, rbx = its saved registers (a TrapFrame). The vector state is swapped
    # in ring 3, then the registers are loaded; rflags and rip go through the 16 bytes below the
    # thread's 128-byte red zone, and ret $128 lands on its rip with its rsp.
    .globl user_switch_stub
user_switch_stub:
    mov $-1, %eax
    mov $-1, %edx
    test %rdi, %rdi
    jz 1f
    xsave64 (%rdi)
1:  xrstor64 (%rsi)
    .globl user_switch_restored
user_switch_restored:                     # from here on the vector state is the incoming thread's
    mov 160(%rbx), %rsp
    sub $144, %rsp
    mov 152(%rbx), %rax
    mov %rax, 0(%rsp)
    mov 136(%rbx), %rax
    mov %rax, 8(%rsp)
    mov 0(%rbx), %r15
    mov 8(%rbx), %r14
    mov 16(%rbx), %r13
    mov 24(%rbx), %r12
    mov 32(%rbx), %r11
    mov 40(%rbx), %r10
    mov 48(%rbx), %r9
    mov 56(%rbx), %r8
    mov 64(%rbx), %rbp
    mov 72(%rbx), %rdi
    mov 80(%rbx), %rsi
    mov 88(%rbx), %rdx
    mov 96(%rbx), %rcx
    mov 112(%rbx), %rax
    mov 104(%rbx), %rbx
    popfq
    ret $128
    .globl user_switch_end
user_switch_end:
    .align 4096
    .text
)");

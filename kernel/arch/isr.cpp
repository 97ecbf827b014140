// Interrupt and exception entry: one stub per vector 0-47 (the CPU pushes an error code for some
// exceptions; the others push a 0 so every frame has the same TrapFrame layout), a catch-all for the
// rest, and the common path that saves the general registers and calls trap_dispatch.
#include "kernel/arch/cpu.h"

asm(R"(
    .text
    .globl isr_table, isr_other, isr_common
    # One 16-byte-aligned stub per vector 0-47, isr0 ... isr47. The vectors for which the CPU
    # pushes an error code (#DF, #TS, #NP, #SS, #GP, #PF, #AC, #CP, #VC, #SX) skip the pushq $0.
    .macro isr_stub vector
    .align 16
isr\vector:
    .if \vector == 8 || (\vector >= 10 && \vector <= 14) || \vector == 17 || \vector == 21 || \vector == 29 || \vector == 30
    .else
    pushq $0
    .endif
    pushq $\vector
    jmp isr_common
    .endm
    .macro isr_address vector
    .quad isr\vector
    .endm

    .altmacro
    .set isr_n, 0
    .rept 48
    isr_stub %isr_n
    .set isr_n, isr_n + 1
    .endr
    .noaltmacro
    .align 16
isr_other: pushq $0; pushq $255; jmp isr_common
isr_common:
    push %rax
    push %rbx
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %rbp
    push %r8
    push %r9
    push %r10
    push %r11
    push %r12
    push %r13
    push %r14
    push %r15
    cld
    mov %rsp, %rdi
    call trap_dispatch
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rbp
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rbx
    pop %rax
    add $16, %rsp
    iretq

    .section .rodata
    .align 8
isr_table:
    .altmacro
    .set isr_n, 0
    .rept 48
    isr_address %isr_n
    .set isr_n, isr_n + 1
    .endr
    .noaltmacro
    .text
)");

// Interrupt and exception entry: one stub per vector 0-47 (the CPU pushes an error code for some
// exceptions; the others push a 0 so every frame has the same TrapFrame layout), a catch-all for the
// rest, and the common path that saves the general registers and calls trap_dispatch.
#include "kernel/arch/cpu.h"

asm(R"(
    .text
    .globl isr_table, isr_other, isr_common
    .align 16
isr0: pushq $0; pushq $0; jmp isr_common
    .align 16
isr1: pushq $0; pushq $1; jmp isr_common
    .align 16
isr2: pushq $0; pushq $2; jmp isr_common
    .align 16
isr3: pushq $0; pushq $3; jmp isr_common
    .align 16
isr4: pushq $0; pushq $4; jmp isr_common
    .align 16
isr5: pushq $0; pushq $5; jmp isr_common
    .align 16
isr6: pushq $0; pushq $6; jmp isr_common
    .align 16
isr7: pushq $0; pushq $7; jmp isr_common
    .align 16
isr8: pushq $8; jmp isr_common
    .align 16
isr9: pushq $0; pushq $9; jmp isr_common
    .align 16
isr10: pushq $10; jmp isr_common
    .align 16
isr11: pushq $11; jmp isr_common
    .align 16
isr12: pushq $12; jmp isr_common
    .align 16
isr13: pushq $13; jmp isr_common
    .align 16
isr14: pushq $14; jmp isr_common
    .align 16
isr15: pushq $0; pushq $15; jmp isr_common
    .align 16
isr16: pushq $0; pushq $16; jmp isr_common
    .align 16
isr17: pushq $17; jmp isr_common
    .align 16
isr18: pushq $0; pushq $18; jmp isr_common
    .align 16
isr19: pushq $0; pushq $19; jmp isr_common
    .align 16
isr20: pushq $0; pushq $20; jmp isr_common
    .align 16
isr21: pushq $21; jmp isr_common
    .align 16
isr22: pushq $0; pushq $22; jmp isr_common
    .align 16
isr23: pushq $0; pushq $23; jmp isr_common
    .align 16
isr24: pushq $0; pushq $24; jmp isr_common
    .align 16
isr25: pushq $0; pushq $25; jmp isr_common
    .align 16
isr26: pushq $0; pushq $26; jmp isr_common
    .align 16
isr27: pushq $0; pushq $27; jmp isr_common
    .align 16
isr28: pushq $0; pushq $28; jmp isr_common
    .align 16
isr29: pushq $29; jmp isr_common
    .align 16
isr30: pushq $30; jmp isr_common
    .align 16
isr31: pushq $0; pushq $31; jmp isr_common
    .align 16
isr32: pushq $0; pushq $32; jmp isr_common
    .align 16
isr33: pushq $0; pushq $33; jmp isr_common
    .align 16
isr34: pushq $0; pushq $34; jmp isr_common
    .align 16
isr35: pushq $0; pushq $35; jmp isr_common
    .align 16
isr36: pushq $0; pushq $36; jmp isr_common
    .align 16
isr37: pushq $0; pushq $37; jmp isr_common
    .align 16
isr38: pushq $0; pushq $38; jmp isr_common
    .align 16
isr39: pushq $0; pushq $39; jmp isr_common
    .align 16
isr40: pushq $0; pushq $40; jmp isr_common
    .align 16
isr41: pushq $0; pushq $41; jmp isr_common
    .align 16
isr42: pushq $0; pushq $42; jmp isr_common
    .align 16
isr43: pushq $0; pushq $43; jmp isr_common
    .align 16
isr44: pushq $0; pushq $44; jmp isr_common
    .align 16
isr45: pushq $0; pushq $45; jmp isr_common
    .align 16
isr46: pushq $0; pushq $46; jmp isr_common
    .align 16
isr47: pushq $0; pushq $47; jmp isr_common
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
    .quad isr0
    .quad isr1
    .quad isr2
    .quad isr3
    .quad isr4
    .quad isr5
    .quad isr6
    .quad isr7
    .quad isr8
    .quad isr9
    .quad isr10
    .quad isr11
    .quad isr12
    .quad isr13
    .quad isr14
    .quad isr15
    .quad isr16
    .quad isr17
    .quad isr18
    .quad isr19
    .quad isr20
    .quad isr21
    .quad isr22
    .quad isr23
    .quad isr24
    .quad isr25
    .quad isr26
    .quad isr27
    .quad isr28
    .quad isr29
    .quad isr30
    .quad isr31
    .quad isr32
    .quad isr33
    .quad isr34
    .quad isr35
    .quad isr36
    .quad isr37
    .quad isr38
    .quad isr39
    .quad isr40
    .quad isr41
    .quad isr42
    .quad isr43
    .quad isr44
    .quad isr45
    .quad isr46
    .quad isr47
    .text
)");

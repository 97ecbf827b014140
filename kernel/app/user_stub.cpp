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
    .align 4096
    .text
)");

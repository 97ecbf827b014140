// Multiboot1 and Multiboot2 headers and the 32-bit -> 64-bit trampoline.
//
// Both loaders enter _start32 in 32-bit protected mode, paging off, EAX = loader magic and EBX = the
// physical address of the boot information. The trampoline zeroes .bss, builds temporary page
// tables that map the first 4 GiB twice (identity, and at the direct-map base where the C++ kernel
// expects physical memory), enables PAE + long mode + NX and jumps to 64-bit code, which calls
// kmain(magic, info). The kernel replaces these tables with its own once it knows the memory map.
//
// The Multiboot1 header uses the a.out kludge (flag 16) so QEMU's -kernel loads the flat binary
// (QEMU refuses ELF64 images); GRUB's multiboot2 command loads the ELF64 file directly.
asm(R"(
    .section .boot, "ax"
    .code32
    .align 4
mb1_header:
    .long 0x1BADB002
    .long 0x00010003                      # page-align modules, memory map, address fields valid
    .long 0x100000000 - (0x1BADB002 + 0x00010003)
    .long mb1_header
    .long __kernel_start
    .long __data_end
    .long __bss_end
    .long _start32

    .align 8
mb2_header:
    .long 0xE85250D6
    .long 0
    .long mb2_header_end - mb2_header
    .long 0x100000000 - (0xE85250D6 + (mb2_header_end - mb2_header))
    .align 8
    .short 6, 0                           # module alignment tag: page-aligned modules
    .long 8
    .align 8
    .short 0, 0                           # end tag
    .long 8
mb2_header_end:

    .globl _start32
_start32:
    cli
    cld
    mov %eax, %esi                        # loader magic
    mov %ebx, %ebp                        # boot information (physical)
    mov $__bss_start, %edi
    mov $__bss_end, %ecx
    sub %edi, %ecx
    xor %eax, %eax
    rep stosb
    mov $boot_stack_top, %esp

    mov $0x80000000, %eax
    cpuid
    cmp $0x80000001, %eax
    jb no_long_mode
    mov $0x80000001, %eax
    cpuid
    test $(1 << 29), %edx
    jz no_long_mode
    mov %edx, %edi                        # bit 20: NX available

    mov $boot_pdpt, %eax
    or $3, %eax
    mov %eax, boot_pml4
    mov %eax, boot_pml4 + 256 * 8          # kDirectMapBase = PML4 slot 256
    mov $boot_pd, %eax
    or $3, %eax
    xor %ecx, %ecx
1:  mov %eax, boot_pdpt(,%ecx,8)
    add $4096, %eax
    inc %ecx
    cmp $4, %ecx
    jb 1b
    xor %ecx, %ecx
2:  mov %ecx, %eax
    shl $21, %eax
    or $0x83, %eax                        # present, writable, 2 MiB
    mov %eax, boot_pd(,%ecx,8)
    inc %ecx
    cmp $2048, %ecx
    jb 2b

    mov $boot_pml4, %eax
    mov %eax, %cr3
    mov %cr4, %eax
    or $0x20, %eax                        # PAE
    mov %eax, %cr4
    mov $0xC0000080, %ecx
    rdmsr
    or $0x100, %eax                       # EFER.LME
    test $(1 << 20), %edi
    jz 3f
    or $0x800, %eax                       # EFER.NXE
3:  wrmsr
    mov %cr0, %eax
    or $0x80010001, %eax                  # PG, WP, PE
    mov %eax, %cr0
    lgdt boot_gdt_ptr
    ljmp $0x08, $start64

no_long_mode:
    mov $no_lm_msg, %esi
4:  lodsb
    test %al, %al
    jz 5f
    mov $0x3F8, %dx
    out %al, %dx
    jmp 4b
5:  mov $0xf4, %dx
    mov $0xff, %eax
    out %eax, %dx
6:  hlt
    jmp 6b

    .code64
start64:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %eax, %eax
    mov %ax, %fs
    mov %ax, %gs
    mov $kernel_stack_top, %rsp
    mov %esi, %edi                        # kmain(magic, info)
    mov %ebp, %esi
    xor %ebp, %ebp                        # terminates stack traces
    call kmain
7:  cli
    hlt
    jmp 7b

    .section .rodata
no_lm_msg:
    .asciz "[bf] PANIC: this CPU has no 64-bit long mode\n"
    .align 8
boot_gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF              # 64-bit code
    .quad 0x00CF92000000FFFF              # data
boot_gdt_ptr:
    .short 3 * 8 - 1
    .long boot_gdt

    .section .bss
    .align 4096
boot_pml4: .skip 4096
boot_pdpt: .skip 4096
boot_pd: .skip 4 * 4096
boot_stack: .skip 4096
boot_stack_top:
    .globl kernel_stack, kernel_stack_top
kernel_stack: .skip 65536
kernel_stack_top:
    .text
)");

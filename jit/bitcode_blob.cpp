// Embeds the kernel bitcode built by jit/CMakeLists.txt (BF_KERNELS_BC is its path) in the executable.
__asm__(
    ".section .rodata.bf_kernels_bc,\"a\",@progbits\n"
    ".balign 16\n"
    ".globl bf_kernels_bc_start\n"
    "bf_kernels_bc_start:\n"
    ".incbin \"" BF_KERNELS_BC
    "\"\n"
    ".globl bf_kernels_bc_end\n"
    "bf_kernels_bc_end:\n"
    ".previous\n");

#include "kernel/arch/cpu.h"

#include "kernel/arch/x86.h"
#include "kernel/lib/kstring.h"
#include "kernel/lib/layout.h"
#include "kernel/lib/log.h"

extern "C" char kernel_stack_top[];
extern "C" const uint64_t isr_table[48];
extern "C" char isr_other[];
extern "C" char syscall_entry[];
extern "C" char user_start_stub[];

namespace bf::kern {

CpuFeatures g_cpu;
bool g_no_smep = false;
bool g_user_entry = false;

namespace {

struct __attribute__((packed)) Tss {
  uint32_t reserved0;
  uint64_t rsp[3];
  uint64_t reserved1;
  uint64_t ist[7];
  uint64_t reserved2;
  uint16_t reserved3;
  uint16_t iomap_base;
};
static_assert(sizeof(Tss) == 104);

struct __attribute__((packed)) IdtEntry {
  uint16_t offset_lo, selector;
  uint8_t ist, type_attr;
  uint16_t offset_mid;
  uint32_t offset_hi, zero;
};
static_assert(sizeof(IdtEntry) == 16);

struct __attribute__((packed)) DescPtr {
  uint16_t limit;
  uint64_t base;
};
static_assert(sizeof(DescPtr) == 10);

constexpr unsigned kIstStack = 8192;
// IST 1: #DF, 2: NMI, 3: #MC, 4: #PF. A kernel stack overflow faults on a fresh stack and is
// reported instead of triple-faulting.
alignas(16) char g_ist[4][kIstStack];
alignas(16) Tss g_tss;
alignas(16) uint64_t g_gdt[8];
alignas(16) IdtEntry g_idt[256];

// type_attr: present | DPL << 5 | 64-bit interrupt gate (0xE). DPL is the highest ring allowed to
// raise the vector with an INT instruction; exceptions the CPU raises itself ignore it.
void set_gate(unsigned v, uint64_t handler, uint8_t ist, uint8_t dpl = 0) {
  const uint8_t type_attr = uint8_t(0x80 | (dpl & 3) << 5 | 0xE);
  g_idt[v] = {uint16_t(handler), kKernelCs, ist, type_attr, uint16_t(handler >> 16), uint32_t(handler >> 32), 0};
}

void setup_gdt() {
  g_gdt[0] = 0;
  g_gdt[1] = 0x00AF9A000000FFFFull;  // kernel code 64
  g_gdt[2] = 0x00CF92000000FFFFull;  // kernel data
  g_gdt[3] = 0x00CFFA000000FFFFull;  // user code 32 (unused; sysret layout)
  g_gdt[4] = 0x00CFF2000000FFFFull;  // user data
  g_gdt[5] = 0x00AFFA000000FFFFull;  // user code 64
  const uint64_t base = uint64_t(&g_tss), limit = sizeof(Tss) - 1;
  g_gdt[6] = (limit & 0xFFFF) | ((base & 0xFFFFFF) << 16) | (0x89ull << 40) | (((limit >> 16) & 0xF) << 48) |
             (((base >> 24) & 0xFF) << 56);
  g_gdt[7] = base >> 32;
  g_tss.rsp[0] = uint64_t(kernel_stack_top);
  for (int i = 0; i < 4; ++i) g_tss.ist[i] = uint64_t(&g_ist[i][kIstStack]);
  g_tss.iomap_base = sizeof(Tss);  // no I/O bitmap: ring 3 gets no port access
  DescPtr p{sizeof(g_gdt) - 1, uint64_t(g_gdt)};
  asm volatile(
      "lgdt %0\n"
      "pushq $0x08\n"
      "leaq 1f(%%rip), %%rax\n"
      "pushq %%rax\n"
      "lretq\n"
      "1: mov $0x10, %%ax\n"
      "mov %%ax, %%ds\n"
      "mov %%ax, %%es\n"
      "mov %%ax, %%ss\n"
      "ltr %w1\n"
      :
      : "m"(p), "r"(uint32_t(kTssSel))
      : "rax", "memory");
}

void setup_idt() {
  for (unsigned v = 0; v < 256; ++v) set_gate(v, uint64_t(isr_other), 0);
  for (unsigned v = 0; v < 48; ++v) set_gate(v, isr_table[v], 0);
  // int3 is an INT instruction: with a DPL 0 gate ring 3 got #GP instead of #BP (SIGTRAP as on
  // Linux, whose #BP gate is DPL 3 too).
  set_gate(3, isr_table[3], 0, 3);
  set_gate(8, isr_table[8], 1);
  set_gate(2, isr_table[2], 2);
  set_gate(18, isr_table[18], 3);
  set_gate(14, isr_table[14], 4);
  DescPtr p{sizeof(g_idt) - 1, uint64_t(g_idt)};
  asm volatile("lidt %0" : : "m"(p));
}

void mask_pic() {
  // Remap the 8259s away from the exception vectors (to 32-47), then mask every line: the kernel
  // runs without device interrupts; the TSC is the clock.
  x86::outb(0x20, 0x11), x86::outb(0xA0, 0x11);
  x86::outb(0x21, 0x20), x86::outb(0xA1, 0x28);
  x86::outb(0x21, 0x04), x86::outb(0xA1, 0x02);
  x86::outb(0x21, 0x01), x86::outb(0xA1, 0x01);
  x86::outb(0x21, 0xFF), x86::outb(0xA1, 0xFF);
}

void detect_features() {
  const x86::Cpuid v = x86::cpuid(0);
  memcpy(g_cpu.vendor, &v.b, 4), memcpy(g_cpu.vendor + 4, &v.d, 4), memcpy(g_cpu.vendor + 8, &v.c, 4);
  g_cpu.vendor[12] = 0;
  const x86::Cpuid f1 = x86::cpuid(1);
  g_cpu.hwcap = f1.d;
  g_cpu.xsave = f1.c & (1u << 26);
  g_cpu.avx = f1.c & (1u << 28);
  g_cpu.rdrand = f1.c & (1u << 30);
  g_cpu.apic = f1.d & (1u << 9);
  if (v.a >= 7) {
    const x86::Cpuid f7 = x86::cpuid(7, 0);
    g_cpu.smep = f7.b & (1u << 7);
    g_cpu.avx512 = f7.b & (1u << 16);
  }
  if (f1.c & (1u << 31)) {
    // Under KVM, SYSCALL may not switch rings (see syscall/entry.cpp): use the user-visible entry.
    const x86::Cpuid h = x86::cpuid(0x40000000);
    char sig[13] = {};
    memcpy(sig, &h.b, 4), memcpy(sig + 4, &h.c, 4), memcpy(sig + 8, &h.d, 4);
    g_cpu.kvm = memcmp(sig, "KVMKVMKVM", 9) == 0;
  }
  const x86::Cpuid e = x86::cpuid(0x80000001);
  g_cpu.nx = e.d & (1u << 20);
  g_cpu.pdpe1gb = e.d & (1u << 26);
}

void enable_fpu_state() {
  uint64_t cr0 = x86::read_cr0();
  cr0 &= ~(1ull << 2);             // EM off: x87 present
  cr0 |= (1ull << 1) | (1ull << 5);  // MP, NE
  x86::write_cr0(cr0);
  uint64_t cr4 = x86::read_cr4();
  cr4 |= (1ull << 9) | (1ull << 10);  // OSFXSR, OSXMMEXCPT: SSE for ring 3
  if (g_cpu.xsave) cr4 |= 1ull << 18;  // OSXSAVE
  g_user_entry = g_cpu.kvm || g_no_smep;
  // SMEP: the kernel never executes user pages -- except the user-visible syscall entry page.
  if (g_cpu.smep && !g_user_entry) cr4 |= 1ull << 20;
  x86::write_cr4(cr4);
  if (g_cpu.xsave) {
    // Enable every state component among x87/SSE/AVX/AVX-512 that the CPU supports. AVX-512 needs
    // its three components together (opmask, ZMM_Hi256, Hi16_ZMM).
    const uint64_t supported = x86::cpuid(0xD, 0).a;
    uint64_t xcr0 = 0x3;
    if (g_cpu.avx && (supported & 0x4)) xcr0 |= 0x4;
    if ((xcr0 & 0x4) && (supported & 0xE0) == 0xE0) xcr0 |= 0xE0;
    x86::xsetbv(0, xcr0);
    g_cpu.xcr0 = xcr0;
  }
  g_cpu.avx = g_cpu.avx && (g_cpu.xcr0 & 0x4);
  g_cpu.avx512 = g_cpu.avx512 && (g_cpu.xcr0 & 0xE0) == 0xE0;
  asm volatile("fninit");
}

void setup_syscall_msrs() {
  x86::wrmsr(x86::kMsrEfer, x86::rdmsr(x86::kMsrEfer) | 1);  // SCE
  x86::wrmsr(x86::kMsrStar, (uint64_t(0x18) << 48) | (uint64_t(kKernelCs) << 32));
  x86::wrmsr(x86::kMsrLstar, uint64_t(syscall_entry));
  x86::wrmsr(x86::kMsrFmask, 0x47700);  // clear TF, IF, DF, IOPL, NT, AC on entry
}

}  // namespace

void cpu_init() {
  detect_features();
  setup_gdt();
  setup_idt();
  mask_pic();
  enable_fpu_state();
  setup_syscall_msrs();
}

void apic_virtual_wire() {
  if (!g_cpu.apic) return;
  uint64_t msr = x86::rdmsr(0x1B);
  if (!(msr & (1ull << 11))) x86::wrmsr(0x1B, msr | (1ull << 11));  // globally enabled
  const uint64_t base = kDirectMapBase + (x86::rdmsr(0x1B) & 0xFFFFFF000ull);
  auto reg = [base](uint32_t off) { return reinterpret_cast<volatile uint32_t*>(base + off); };
  *reg(0x80) = 0;             // task priority: accept everything
  *reg(0xF0) = 0x100 | 47;    // software-enabled; spurious vector 47 (ignored like a PIC spurious)
  *reg(0x320) = 0x10000;      // LVT timer masked
  *reg(0x350) = 0x700;        // LINT0: ExtINT (the 8259)
  *reg(0x360) = 0x400;        // LINT1: NMI
}

void enter_user_copy(uint64_t rsp, const UserCopy& c) {
  asm volatile(
      "mov %%ax, %%ds\n"
      "mov %%ax, %%es\n"
      "pushq %[ss]\n"
      "pushq %[rsp]\n"
      "pushq $0x202\n"
      "pushq %[cs]\n"
      "pushq %[rip]\n"
      "mov 0(%%rbx), %%rsi\n"
      "mov 8(%%rbx), %%rdi\n"
      "mov 16(%%rbx), %%rcx\n"
      "mov 24(%%rbx), %%rdx\n"
      "mov 32(%%rbx), %%r8\n"
      "mov 40(%%rbx), %%r9\n"
      "xor %%eax, %%eax\n xor %%ebx, %%ebx\n xor %%ebp, %%ebp\n"
      "xor %%r10d, %%r10d\n xor %%r11d, %%r11d\n"
      "xor %%r12d, %%r12d\n xor %%r13d, %%r13d\n xor %%r14d, %%r14d\n xor %%r15d, %%r15d\n"
      "iretq\n"
      :
      : "a"(uint64_t(kUserDs)), "b"(&c), [ss] "i"(uint64_t(kUserDs)), [rsp] "r"(rsp), [cs] "i"(uint64_t(kUserCs)),
        [rip] "r"(uint64_t(user_start_stub))
      : "memory");
  __builtin_unreachable();
}

void enter_user(uint64_t rip, uint64_t rsp) {
  // iretq into ring 3 with IF set (no interrupt source is unmasked) and every other register
  // zeroed: the ELF entry point reads rdx as an atexit hook, which must be 0.
  asm volatile(
      "mov %%ax, %%ds\n"
      "mov %%ax, %%es\n"
      "pushq %[ss]\n"
      "pushq %[rsp]\n"
      "pushq $0x202\n"
      "pushq %[cs]\n"
      "pushq %[rip]\n"
      "xor %%eax, %%eax\n xor %%ebx, %%ebx\n xor %%ecx, %%ecx\n xor %%edx, %%edx\n"
      "xor %%esi, %%esi\n xor %%edi, %%edi\n xor %%ebp, %%ebp\n"
      "xor %%r8d, %%r8d\n xor %%r9d, %%r9d\n xor %%r10d, %%r10d\n xor %%r11d, %%r11d\n"
      "xor %%r12d, %%r12d\n xor %%r13d, %%r13d\n xor %%r14d, %%r14d\n xor %%r15d, %%r15d\n"
      "iretq\n"
      :
      : "a"(uint64_t(kUserDs)), [ss] "i"(uint64_t(kUserDs)), [rsp] "r"(rsp), [cs] "i"(uint64_t(kUserCs)),
        [rip] "r"(rip)
      : "memory");
  __builtin_unreachable();
}

}  // namespace bf::kern

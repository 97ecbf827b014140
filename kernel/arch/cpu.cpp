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

// A code or data segment descriptor (Intel SDM vol. 3, 3.4.5). Long mode ignores base and limit
// (flat 4 GiB here) except for the 32-bit user code slot.
struct SegmentDescriptor {
  uint64_t limit_lo : 16, base_lo : 24;
  uint64_t accessed : 1, writable : 1, conforming : 1, code : 1, code_or_data : 1, dpl : 2, present : 1;
  uint64_t limit_hi : 4, available : 1, long_mode : 1, default_32 : 1, limit_in_pages : 1, base_hi : 8;
};
static_assert(sizeof(SegmentDescriptor) == 8);

enum class Segment { kCode64, kCode32, kData };
constexpr SegmentDescriptor segment(Segment kind, unsigned dpl) {
  const bool code = kind != Segment::kData;
  return {.limit_lo = 0xFFFF, .base_lo = 0, .accessed = 0, .writable = 1, .conforming = 0, .code = code,
          .code_or_data = 1, .dpl = dpl, .present = 1, .limit_hi = 0xF, .available = 0,
          .long_mode = kind == Segment::kCode64, .default_32 = kind != Segment::kCode64, .limit_in_pages = 1,
          .base_hi = 0};
}
// The encodings every x86-64 kernel uses: the bit fields are laid out as the SDM draws them.
constexpr uint64_t encoding(SegmentDescriptor d) { return __builtin_bit_cast(uint64_t, d); }
static_assert(encoding(segment(Segment::kCode64, 0)) == 0x00AF9A000000FFFFull);
static_assert(encoding(segment(Segment::kData, 0)) == 0x00CF92000000FFFFull);
static_assert(encoding(segment(Segment::kCode32, 3)) == 0x00CFFA000000FFFFull);
static_assert(encoding(segment(Segment::kData, 3)) == 0x00CFF2000000FFFFull);
static_assert(encoding(segment(Segment::kCode64, 3)) == 0x00AFFA000000FFFFull);

// The 16-byte TSS descriptor of long mode (SDM vol. 3, 8.2.3).
struct TssDescriptor {
  uint64_t limit_lo : 16, base_lo : 24, type : 4, zero : 1, dpl : 2, present : 1;
  uint64_t limit_hi : 4, available : 1, reserved0 : 2, limit_in_pages : 1, base_mid : 8;
  uint32_t base_hi, reserved1;
};
static_assert(sizeof(TssDescriptor) == 16);

constexpr TssDescriptor tss_descriptor(uint64_t base) {
  constexpr uint64_t limit = sizeof(Tss) - 1;
  return {.limit_lo = limit & 0xFFFF, .base_lo = base & 0xFFFFFF, .type = 0x9 /* available 64-bit TSS */,
          .zero = 0, .dpl = 0, .present = 1, .limit_hi = limit >> 16, .available = 0, .reserved0 = 0,
          .limit_in_pages = 0, .base_mid = (base >> 24) & 0xFF, .base_hi = uint32_t(base >> 32), .reserved1 = 0};
}

struct DescriptorWords {
  uint64_t lo, hi;
};
static_assert(__builtin_bit_cast(DescriptorWords, tss_descriptor(0x1122334455667788)).lo == 0x5500896677880067ull &&
              __builtin_bit_cast(DescriptorWords, tss_descriptor(0x1122334455667788)).hi == 0x11223344);

struct alignas(16) Gdt {
  SegmentDescriptor null, kernel_code, kernel_data, user_code32, user_data, user_code;
  TssDescriptor tss;
};
static_assert(sizeof(Gdt) == 8 * 8);
static_assert(__builtin_offsetof(Gdt, kernel_code) == kKernelCs && __builtin_offsetof(Gdt, kernel_data) == kKernelDs);
static_assert(__builtin_offsetof(Gdt, user_data) == (kUserDs & ~3) && __builtin_offsetof(Gdt, user_code) == (kUserCs & ~3));
static_assert(__builtin_offsetof(Gdt, tss) == kTssSel);

// STAR[47:32]: SYSCALL loads CS from it and SS from it + 8. STAR[63:48]: SYSRET to 64-bit mode
// loads CS from it + 16 and SS from it + 8, both with RPL 3. (The kernel returns with iretq, but
// keeps the layout so that sysret stays possible.)
constexpr uint16_t kStarSyscallCs = kKernelCs, kStarSysretBase = __builtin_offsetof(Gdt, user_code32);
static_assert(kStarSyscallCs + 8 == kKernelDs);
static_assert(((kStarSysretBase + 16) | 3) == kUserCs && ((kStarSysretBase + 8) | 3) == kUserDs);

// A 64-bit interrupt gate (SDM vol. 3, 6.14.1).
struct IdtGate {
  uint64_t offset_lo : 16, selector : 16, ist : 3, reserved0 : 5, type : 4, zero : 1, dpl : 2, present : 1,
      offset_mid : 16;
  uint32_t offset_hi, reserved1;
};
static_assert(sizeof(IdtGate) == 16);

// DPL is the highest ring allowed to raise the vector with an INT instruction; exceptions the CPU
// raises itself ignore it.
constexpr IdtGate interrupt_gate(uint64_t handler, unsigned ist, unsigned dpl) {
  return {.offset_lo = handler & 0xFFFF, .selector = kKernelCs, .ist = ist, .reserved0 = 0,
          .type = 0xE /* 64-bit interrupt gate */, .zero = 0, .dpl = dpl, .present = 1,
          .offset_mid = (handler >> 16) & 0xFFFF, .offset_hi = uint32_t(handler >> 32), .reserved1 = 0};
}
static_assert(__builtin_bit_cast(DescriptorWords, interrupt_gate(0x1122334455667788, 2, 3)).lo == 0x5566EE0200087788ull &&
              __builtin_bit_cast(DescriptorWords, interrupt_gate(0x1122334455667788, 2, 3)).hi == 0x11223344);

struct __attribute__((packed)) DescPtr {
  uint16_t limit;
  uint64_t base;
};
static_assert(sizeof(DescPtr) == 10);

constexpr unsigned kIstStack = 8192;
// The TSS's interrupt stacks (0 = none, stay on the current stack). A kernel stack overflow
// faults on a fresh stack and is reported instead of triple-faulting.
enum Ist : unsigned { kNoIst, kIstDoubleFault, kIstNmi, kIstMachineCheck, kIstPageFault };
alignas(16) char g_ist[kIstPageFault][kIstStack];
alignas(16) Tss g_tss;
Gdt g_gdt;
alignas(16) IdtGate g_idt[256];

void set_gate(unsigned v, uint64_t handler, unsigned ist, unsigned dpl = 0) { g_idt[v] = interrupt_gate(handler, ist, dpl); }

void setup_gdt() {
  g_gdt = {.null = {},
           .kernel_code = segment(Segment::kCode64, 0),
           .kernel_data = segment(Segment::kData, 0),
           .user_code32 = segment(Segment::kCode32, 3),  // unused; the sysret layout
           .user_data = segment(Segment::kData, 3),
           .user_code = segment(Segment::kCode64, 3),
           .tss = tss_descriptor(uint64_t(&g_tss))};
  g_tss.rsp[0] = uint64_t(kernel_stack_top);
  for (unsigned i = 0; i < kIstPageFault; ++i) g_tss.ist[i] = uint64_t(&g_ist[i][kIstStack]);
  g_tss.iomap_base = sizeof(Tss);  // no I/O bitmap: ring 3 gets no port access
  DescPtr p{sizeof(g_gdt) - 1, uint64_t(&g_gdt)};
  asm volatile(
      "lgdt %[gdt]\n"
      "pushq %[cs]\n"
      "leaq 1f(%%rip), %%rax\n"
      "pushq %%rax\n"
      "lretq\n"
      "1: mov %[ds], %%ax\n"
      "mov %%ax, %%ds\n"
      "mov %%ax, %%es\n"
      "mov %%ax, %%ss\n"
      "ltr %w[tss]\n"
      :
      : [gdt] "m"(p), [cs] "i"(kKernelCs), [ds] "i"(kKernelDs), [tss] "r"(uint32_t(kTssSel))
      : "rax", "memory");
}

void setup_idt() {
  for (unsigned v = 0; v < 256; ++v) set_gate(v, uint64_t(isr_other), kNoIst);
  for (unsigned v = 0; v < 48; ++v) set_gate(v, isr_table[v], kNoIst);
  // int3 is an INT instruction: with a DPL 0 gate ring 3 got #GP instead of #BP (SIGTRAP as on
  // Linux, whose #BP gate is DPL 3 too).
  set_gate(3, isr_table[3], kNoIst, 3);
  set_gate(8, isr_table[8], kIstDoubleFault);
  set_gate(2, isr_table[2], kIstNmi);
  set_gate(18, isr_table[18], kIstMachineCheck);
  set_gate(14, isr_table[14], kIstPageFault);
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
  x86::wrmsr(x86::kMsrStar, uint64_t(kStarSysretBase) << 48 | uint64_t(kStarSyscallCs) << 32);
  x86::wrmsr(x86::kMsrLstar, uint64_t(syscall_entry));
  x86::wrmsr(x86::kMsrFmask, 0x47700);  // clear TF, IF, DF, IOPL, NT, AC on entry
  // syscall_entry (syscall/entry.cpp) builds a ring-3 interrupt frame with the user selectors; its
  // top-level asm cannot take operands, so they reach it as absolute symbols. Emits no code.
  asm(".globl user_cs_selector, user_ss_selector\n"
      ".set user_cs_selector, %c[cs]\n"
      ".set user_ss_selector, %c[ss]"
      :
      : [cs] "i"(kUserCs), [ss] "i"(kUserDs));
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
  uint64_t msr = x86::rdmsr(x86::kMsrApicBase);
  if (!(msr & (1ull << 11))) x86::wrmsr(x86::kMsrApicBase, msr | (1ull << 11));  // globally enabled
  const uint64_t base = kDirectMapBase + (x86::rdmsr(x86::kMsrApicBase) & 0xFFFFFF000ull);
  auto reg = [base](uint32_t off) { return reinterpret_cast<volatile uint32_t*>(base + off); };
  *reg(0x80) = 0;             // task priority: accept everything
  *reg(0xF0) = 0x100 | 47;    // software-enabled; spurious vector 47 (ignored like a PIC spurious)
  *reg(0x320) = 0x10000;      // LVT timer masked
  *reg(0x350) = 0x700;        // LINT0: ExtINT (the 8259)
  *reg(0x360) = 0x400;        // LINT1: NMI
}

namespace {

// iretq into ring 3 at rip with rsp and IF set (no interrupt source is unmasked); rsi, rdi, rcx,
// rdx, r8 and r9 are loaded from regs (in UserCopy's order), every other register is zero.
[[noreturn]] void iret_to_user(uint64_t rip, uint64_t rsp, const UserCopy& regs) {
  constexpr uint64_t kRflags = 1 << 9 | 1 << 1;  // IF, and bit 1, which is always set
  asm volatile(
      "mov %%ax, %%ds\n"
      "mov %%ax, %%es\n"
      "pushq %[ss]\n"
      "pushq %[rsp]\n"
      "pushq %[rflags]\n"
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
      : "a"(uint64_t(kUserDs)), "b"(&regs), [ss] "i"(uint64_t(kUserDs)), [rsp] "r"(rsp), [rflags] "i"(kRflags),
        [cs] "i"(uint64_t(kUserCs)), [rip] "r"(rip)
      : "memory");
  __builtin_unreachable();
}

}  // namespace

void enter_user_copy(uint64_t rsp, const UserCopy& c) { iret_to_user(uint64_t(user_start_stub), rsp, c); }

void enter_user(uint64_t rip, uint64_t rsp) {
  // The ELF entry point reads rdx as an atexit hook, which must be 0.
  static constexpr UserCopy kNoRegisters{};
  iret_to_user(rip, rsp, kNoRegisters);
}

}  // namespace bf::kern

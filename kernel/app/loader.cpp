#include "kernel/app/loader.h"

#include "kernel/app/elf.h"
#include "kernel/app/stack.h"
#include "kernel/arch/cpu.h"
#include "kernel/arch/timer.h"
#include "kernel/arch/x86.h"
#include "kernel/fs/bootfs.h"
#include "kernel/lib/exit.h"
#include "kernel/lib/kstring.h"
#include "kernel/lib/layout.h"
#include "kernel/lib/log.h"
#include "kernel/mm/phys.h"
#include "kernel/mm/vm.h"

namespace bf::kern {
namespace {

ElfImage g_img;  // large: kept off the kernel stack
UserCopy g_copy;
ElfSymbols g_syms;
uint64_t g_bias = 0;
char g_symbuf[160];

uint64_t page_flags(uint64_t va, uint64_t bias) {
  // Union of the permissions of the segments touching this page; R is implied on x86.
  uint64_t w = 0, x = 0;
  bool any = false;
  for (unsigned i = 0; i < g_img.nsegs; ++i) {
    const ElfSegment& s = g_img.segs[i];
    const uint64_t lo = align_down(s.vaddr + bias, kPageSize), hi = align_up(s.vaddr + bias + s.memsz, kPageSize);
    if (va < lo || va >= hi) continue;
    any = true;
    if (s.flags & kPfW) w = kPteW;
    if (s.flags & kPfX) x = 1;
  }
  if (!any) return kPteU | kPteW | kPteNx;  // padding between segments: plain data
  return kPteU | w | (x ? 0 : kPteNx);
}

}  // namespace

const char* app_symbol(uint64_t addr, bool is_return) {
  uint64_t off = 0;
  // A return address may be one past the end of its call's function: look up addr - 1.
  const uint64_t look = addr - g_bias - (is_return ? 1 : 0);
  // A linear scan per address: skip it for huge tables (ring 0 may be slow, see README).
  const char* name = g_syms.count && g_syms.count < 400000 ? elf_symbolize(g_syms, look, &off) : nullptr;
  if (!name) return "";
  ksnprintf(g_symbuf, sizeof g_symbuf, " %s+0x%lx", name, off + (is_return ? 1 : 0));
  return g_symbuf;
}

void app_run(int exe_index, unsigned argc, const char* const* argv) {
  const BootFile* f = bootfs_file(exe_index);
  const uint8_t* data = static_cast<const uint8_t*>(phys_to_ptr(f->phys));
  if (const char* err = elf_parse(data, f->size, kUserMin, kMmapBase, &g_img)) {
    klog("cannot run /%s: %s", f->name, err);
    machine_exit(kExitPanic);
  }
  const uint64_t bias = g_img.pie ? kPieBase - align_down(g_img.min_vaddr, kLargePageSize) : 0;
  const uint64_t hi = align_up(g_img.max_vaddr + bias, kLargePageSize);
  g_bias = bias;
  elf_symbols(data, f->size, &g_syms);
  // Read-only segments whose bytes all come from the file (text, rodata) are mapped zero-copy
  // from the boot module, which the loader placed page-aligned (the file offset and the address
  // agree modulo the page size). The pages of writable or zero-filled segments are copied into
  // one fresh region [clo, chi) that also receives any read-only bytes sharing those pages.
  uint64_t clo = ~0ull, chi = 0;
  for (unsigned i = 0; i < g_img.nsegs; ++i) {
    const ElfSegment& s = g_img.segs[i];
    if (!(s.flags & kPfW) && s.filesz == s.memsz) continue;
    const uint64_t a = align_down(s.vaddr + bias, kPageSize), b = align_up(s.vaddr + bias + s.memsz, kPageSize);
    if (a < clo) clo = a;
    if (b > chi) chi = b;
  }
  for (unsigned i = 0; i < g_img.nsegs; ++i) {
    const ElfSegment& s = g_img.segs[i];
    if ((s.flags & kPfW) || s.filesz != s.memsz) continue;
    uint64_t a = align_down(s.vaddr + bias, kPageSize), b = align_up(s.vaddr + bias + s.memsz, kPageSize);
    if (clo < chi && a < chi && b > clo) {  // trim the pages the copied region owns
      if (a >= clo) a = chi;
      else b = clo;
    }
    if (a >= b) continue;
    const uint64_t off = align_down(s.offset, kPageSize) + (a - align_down(s.vaddr + bias, kPageSize));
    const uint64_t fl = kPteU | ((s.flags & kPfX) ? 0 : kPteNx);
    if (vm_map_frames(a, f->phys + off, b - a, fl, true) < 0) {
      klog("cannot run /%s: cannot map its text", f->name);
      machine_exit(kExitPanic);
    }
  }
  if (clo < chi) {
    uint64_t phys = 0;
    if (!vm_map_fixed_owned(clo, chi - clo, kPteU | kPteW | kPteNx, &phys)) {
      klog("cannot run /%s: out of memory for its %lu KiB of data", f->name, (chi - clo) >> 10);
      machine_exit(kExitPanic);
    }
    uint8_t* image = static_cast<uint8_t*>(phys_to_ptr(phys));
    const uint64_t t0 = monotonic_ns();
    // The largest writable segment's bytes are copied later in ring 3 (app/user_stub.cpp); the
    // few bytes of other segments sharing these pages are copied here.
    int big = -1;
    for (unsigned i = 0; i < g_img.nsegs; ++i)
      if ((g_img.segs[i].flags & kPfW) && (big < 0 || g_img.segs[i].filesz > g_img.segs[big].filesz)) big = int(i);
    for (unsigned i = 0; i < g_img.nsegs; ++i) {
      const ElfSegment& s = g_img.segs[i];
      const uint64_t sa = s.vaddr + bias, sb = sa + s.filesz;  // file-backed bytes of the segment
      const uint64_t a = sa > clo ? sa : clo, b = sb < chi ? sb : chi;
      if (a >= b) continue;
      if (int(i) == big) {
        const uint64_t view_off = align_down(s.offset, kPageSize);
        const uint64_t view_len = align_up(s.offset + s.filesz, kPageSize) - view_off;
        const int64_t view = vm_map_frames(0, f->phys + view_off, view_len, kPteU | kPteNx, false);
        if (view < 0) {
          klog("cannot run /%s: cannot map its data", f->name);
          machine_exit(kExitPanic);
        }
        g_copy = {uint64_t(view) + (s.offset - view_off), sa, s.filesz, 0, uint64_t(view), view_len};
        continue;
      }
      memcpy(image + (a - clo), data + s.offset + (a - sa), b - a);  // the rest stays zero
    }
    klog("app: data prepared in %lu ms", (monotonic_ns() - t0) / 1000000);
    // Per-page permissions: data W, everything NX unless an executable segment shares the page.
    uint64_t run_start = clo, run_flags = page_flags(clo, bias);
    for (uint64_t va = clo + kPageSize; va <= chi; va += kPageSize) {
      const uint64_t fl = va < chi ? page_flags(va, bias) : ~0ull;
      if (fl == run_flags) continue;
      if (run_flags != (kPteU | kPteW | kPteNx)) vm_protect(run_start, va - run_start, run_flags);
      run_start = va, run_flags = fl;
    }
  }
  const uint64_t lo = align_down(g_img.min_vaddr + bias, kPageSize);
  vm_brk_init(hi);

  uint64_t stack_phys = 0;
  if (!vm_map_fixed_owned(kStackTop - kStackSize, kStackSize, kPteU | kPteW | kPteNx, &stack_phys)) {
    klog("cannot run /%s: out of memory for the stack", f->name);
    machine_exit(kExitPanic);
  }
  static const char* const envp[] = {"PATH=/", "HOME=/", "TERM=dumb", "LANG=C"};
  const uint64_t auxv[] = {
      kAtPhdr, g_img.phdr_vaddr + bias, kAtPhent, sizeof(Elf64Phdr), kAtPhnum, g_img.phnum,
      kAtPagesz, kPageSize, kAtBase, 0, kAtFlags, 0, kAtEntry, g_img.entry + bias,
      kAtUid, 0, kAtEuid, 0, kAtGid, 0, kAtEgid, 0, kAtSecure, 0,
      kAtHwcap, g_cpu.hwcap, kAtHwcap2, 0, kAtClktck, 100,
  };
  StackSpec spec{argv, argc, envp, 4, auxv, sizeof(auxv) / 16, "x86_64", {}};
  for (int i = 0; i < 16; i += 8) {
    const uint64_t r = x86::rdtsc() * 0x9E3779B97F4A7C15ull + uint64_t(i);
    memcpy(spec.random + i, &r, 8);
  }
  const uint64_t sp = build_initial_stack(static_cast<uint8_t*>(phys_to_ptr(stack_phys)), kStackSize, kStackTop, spec);
  if (!sp) {
    klog("cannot run /%s: arguments do not fit on the stack", f->name);
    machine_exit(kExitPanic);
  }
  klog("app: /%s %s entry=0x%lx image=[0x%lx,0x%lx) brk=0x%lx, entering ring 3 at %lu ms", f->name,
       g_img.pie ? "static-pie" : "static", g_img.entry + bias, lo, hi, hi, monotonic_ns() / 1000000);
  if (g_copy.len) {
    g_copy.entry = g_img.entry + bias;
    enter_user_copy(sp, g_copy);
  }
  enter_user(g_img.entry + bias, sp);
}

}  // namespace bf::kern

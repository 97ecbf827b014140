#include "kernel/app/loader.h"

#include "kernel/app/elf.h"
#include "kernel/app/stack.h"
#include "kernel/arch/cpu.h"
#include "kernel/arch/timer.h"
#include "kernel/arch/x86.h"
#include "kernel/dev/virtio_blk.h"
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

// Code page tracking (app_track_code_pages): the executable segments' span and, at exit, which of
// its pages the CPU used.
bool g_track_code = false;
constexpr uint64_t kMaxCodePages = 1 << 16;  // 256 MiB of code
uint64_t g_code_lo = 0, g_code_hi = 0;       // biased, page aligned
uint8_t g_code_used[kMaxCodePages / 8];

bool starts_with(const char* s, const char* prefix) {
  while (*prefix)
    if (*s++ != *prefix++) return false;
  return true;
}

bool contains(const char* s, const char* sub) {
  for (; *s; ++s)
    if (starts_with(s, sub)) return true;
  return false;
}

bool code_page_used(uint64_t va) {
  const uint64_t p = (va - g_code_lo) / kPageSize;
  return p < kMaxCodePages && (g_code_used[p / 8] >> (p % 8)) & 1;
}

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

void app_track_code_pages(bool on) { g_track_code = on; }

void app_report_code_pages() {
  if (!g_track_code || g_code_hi <= g_code_lo) return;
  const uint64_t pages = (g_code_hi - g_code_lo) / kPageSize < kMaxCodePages ? (g_code_hi - g_code_lo) / kPageSize
                                                                             : kMaxCodePages;
  uint64_t used = 0;
  for (uint64_t p = 0; p < pages; ++p) {
    PtMapping m;
    // A page not mapped on its own (shared with data, copied) counts as used: an upper bound.
    const bool mapped = vm_tables().translate(g_code_lo + p * kPageSize, &m);
    if (mapped && (m.accessed || m.page_size != kPageSize)) {
      g_code_used[p / 8] |= uint8_t(1u << (p % 8));
      used++;
    }
  }
  struct Tally {
    uint64_t fns, kib, used_fns, used_kib;
  } t[3] = {};  // LLVM, bareflow, the rest (libc, libstdc++, ...)
  for (uint64_t i = 0; i < g_syms.count; ++i) {
    ElfFunction f;
    if (!elf_function(g_syms, i, &f)) continue;
    const uint64_t a = f.addr + g_bias;
    if (a < g_code_lo || a + f.size > g_code_hi) continue;
    // Mangled names: namespace llvm nested anywhere (its templates included), or LLVM's C API.
    const bool llvm = contains(f.name, "N4llvm") || starts_with(f.name, "LLVM");
    const bool bf = starts_with(f.name, "_ZN2bf") || starts_with(f.name, "_ZNK2bf");
    Tally& k = t[llvm ? 0 : bf ? 1 : 2];
    k.fns++;
    k.kib += f.size;
    bool on_used = false;
    for (uint64_t va = align_down(a, kPageSize); va < a + f.size && !on_used; va += kPageSize) on_used = code_page_used(va);
    if (on_used) {
      k.used_fns++;
      k.used_kib += f.size;
    }
  }
  for (Tally& k : t) k.kib >>= 10, k.used_kib >>= 10;
  klog("code pages: %lu of %lu pages of code used (%lu.%lu%%)", used, pages, used * 100 / pages,
       used * 1000 / pages % 10);
  klog("code pages: functions on used pages: LLVM %lu of %lu (%lu of %lu KiB), bareflow %lu of %lu, other %lu of %lu",
       t[0].used_fns, t[0].fns, t[0].used_kib, t[0].kib, t[1].used_fns, t[1].fns, t[2].used_fns, t[2].fns);
}

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

namespace {

// "cannot run /name: why" and the panic status: the module is not something this kernel can run.
[[noreturn]] __attribute__((format(printf, 2, 3))) void cannot_run(const BootFile* f, const char* why, ...) {
  char reason[160];
  va_list ap;
  va_start(ap, why);
  kvsnprintf(reason, sizeof reason, why, ap);
  va_end(ap);
  klog("cannot run /%s: %s", f->name, reason);
  machine_exit(kExitPanic);
}

struct PageSpan {
  uint64_t lo, hi;  // [lo, hi), page aligned; empty when lo >= hi
};

PageSpan segment_pages(const ElfSegment& s, uint64_t bias) {
  return {align_down(s.vaddr + bias, kPageSize), align_up(s.vaddr + bias + s.memsz, kPageSize)};
}

// Read-only segments whose bytes all come from the file (text, rodata) are mapped zero-copy from
// the boot module; the pages of writable or zero-filled segments are copied.
bool copied(const ElfSegment& s) { return (s.flags & kPfW) || s.filesz != s.memsz; }

// The span of the copied segments' pages: one fresh region, which also receives any read-only
// bytes sharing those pages.
PageSpan copied_pages(uint64_t bias) {
  PageSpan span{~0ull, 0};
  for (unsigned i = 0; i < g_img.nsegs; ++i) {
    if (!copied(g_img.segs[i])) continue;
    const PageSpan p = segment_pages(g_img.segs[i], bias);
    if (p.lo < span.lo) span.lo = p.lo;
    if (p.hi > span.hi) span.hi = p.hi;
  }
  return span;
}

// The zero-copy mappings. The boot loader placed the module page-aligned, so the file offset and
// the address agree modulo the page size.
void map_read_only_segments(const BootFile* f, uint64_t bias, PageSpan data) {
  for (unsigned i = 0; i < g_img.nsegs; ++i) {
    const ElfSegment& s = g_img.segs[i];
    if (copied(s)) continue;
    auto [a, b] = segment_pages(s, bias);
    if (data.lo < data.hi && a < data.hi && b > data.lo) {  // trim the pages the copied region owns
      if (a >= data.lo) a = data.hi;
      else b = data.lo;
    }
    if (a >= b) continue;
    const uint64_t off = align_down(s.offset, kPageSize) + (a - align_down(s.vaddr + bias, kPageSize));
    const uint64_t fl = kPteU | ((s.flags & kPfX) ? 0 : kPteNx);
    const bool code = (s.flags & kPfX) != 0;
    if (code && g_track_code) {
      if (!g_code_hi || a < g_code_lo) g_code_lo = a;
      if (b > g_code_hi) g_code_hi = b;
    }
    if (vm_map_frames(a, f->phys + off, b - a, fl, true, code && g_track_code) < 0) cannot_run(f, "cannot map its text");
  }
}

// Fills the copied region. The largest writable segment's bytes are copied later, in ring 3
// (app/user_stub.cpp), from a read-only view of the module this sets up in g_copy; the few bytes
// of other segments sharing these pages are copied here. The rest stays zero (bss).
void prepare_data(const BootFile* f, uint64_t bias, PageSpan data) {
  const uint8_t* file = static_cast<const uint8_t*>(phys_to_ptr(f->phys));
  uint64_t phys = 0;
  if (!vm_map_fixed_owned(data.lo, data.hi - data.lo, kPteU | kPteW | kPteNx, &phys))
    cannot_run(f, "out of memory for its %lu KiB of data", (data.hi - data.lo) >> 10);
  uint8_t* image = static_cast<uint8_t*>(phys_to_ptr(phys));
  const uint64_t t0 = monotonic_ns();
  int big = -1;
  for (unsigned i = 0; i < g_img.nsegs; ++i)
    if ((g_img.segs[i].flags & kPfW) && (big < 0 || g_img.segs[i].filesz > g_img.segs[big].filesz)) big = int(i);
  for (unsigned i = 0; i < g_img.nsegs; ++i) {
    const ElfSegment& s = g_img.segs[i];
    const uint64_t sa = s.vaddr + bias, sb = sa + s.filesz;  // file-backed bytes of the segment
    const uint64_t a = sa > data.lo ? sa : data.lo, b = sb < data.hi ? sb : data.hi;
    if (a >= b) continue;
    if (int(i) == big) {
      const uint64_t view_off = align_down(s.offset, kPageSize);
      const uint64_t view_len = align_up(s.offset + s.filesz, kPageSize) - view_off;
      const int64_t view = vm_map_frames(0, f->phys + view_off, view_len, kPteU | kPteNx, false);
      if (view < 0) cannot_run(f, "cannot map its data");
      g_copy = {uint64_t(view) + (s.offset - view_off), sa, s.filesz, 0, uint64_t(view), view_len};
      continue;
    }
    memcpy(image + (a - data.lo), file + s.offset + (a - sa), b - a);
  }
  klog("app: data prepared in %lu ms", (monotonic_ns() - t0) / 1000000);
}

// Per-page permissions of the copied region: data W, everything NX unless an executable segment
// shares the page (it was mapped U+W+NX as a whole).
void protect_data_pages(uint64_t bias, PageSpan data) {
  uint64_t run_start = data.lo, run_flags = page_flags(data.lo, bias);
  for (uint64_t va = data.lo + kPageSize; va <= data.hi; va += kPageSize) {
    const uint64_t fl = va < data.hi ? page_flags(va, bias) : ~0ull;
    if (fl == run_flags) continue;
    if (run_flags != (kPteU | kPteW | kPteNx)) vm_protect(run_start, va - run_start, run_flags);
    run_start = va, run_flags = fl;
  }
}

// Maps the stack and writes argc/argv/envp/auxv on it; returns the initial rsp.
uint64_t build_stack(const BootFile* f, unsigned argc, const char* const* argv, uint64_t bias) {
  uint64_t stack_phys = 0;
  if (!vm_map_fixed_owned(kStackTop - kStackSize, kStackSize, kPteU | kPteW | kPteNx, &stack_phys))
    cannot_run(f, "out of memory for the stack");
  // With a disk, the engine's persistent store is on it (BAREFLOW_STATE is its default path).
  static const char* const envp[] = {"PATH=/", "HOME=/", "TERM=dumb", "LANG=C", "BAREFLOW_STATE=/state"};
  const unsigned nenv = blk_info().state == BlkState::Absent ? 4 : 5;
  const uint64_t auxv[] = {
      kAtPhdr, g_img.phdr_vaddr + bias, kAtPhent, sizeof(Elf64Phdr), kAtPhnum, g_img.phnum,
      kAtPagesz, kPageSize, kAtBase, 0, kAtFlags, 0, kAtEntry, g_img.entry + bias,
      kAtUid, 0, kAtEuid, 0, kAtGid, 0, kAtEgid, 0, kAtSecure, 0,
      kAtHwcap, g_cpu.hwcap, kAtHwcap2, 0, kAtClktck, 100,
  };
  StackSpec spec{argv, argc, envp, nenv, auxv, sizeof(auxv) / 16, "x86_64", {}};
  for (int i = 0; i < 16; i += 8) {
    const uint64_t r = x86::rdtsc() * 0x9E3779B97F4A7C15ull + uint64_t(i);
    memcpy(spec.random + i, &r, 8);
  }
  const uint64_t sp = build_initial_stack(static_cast<uint8_t*>(phys_to_ptr(stack_phys)), kStackSize, kStackTop, spec);
  if (!sp) cannot_run(f, "arguments do not fit on the stack");
  return sp;
}

}  // namespace

void app_run(int exe_index, unsigned argc, const char* const* argv) {
  const BootFile* f = bootfs_file(exe_index);
  const uint8_t* file = static_cast<const uint8_t*>(phys_to_ptr(f->phys));
  if (const char* err = elf_parse(file, f->size, kUserMin, kMmapBase, &g_img)) cannot_run(f, "%s", err);
  const uint64_t bias = g_img.pie ? kPieBase - align_down(g_img.min_vaddr, kLargePageSize) : 0;
  const uint64_t hi = align_up(g_img.max_vaddr + bias, kLargePageSize);
  g_bias = bias;
  elf_symbols(file, f->size, &g_syms);
  const PageSpan data = copied_pages(bias);
  map_read_only_segments(f, bias, data);
  if (data.lo < data.hi) {
    prepare_data(f, bias, data);
    protect_data_pages(bias, data);
  }
  const uint64_t lo = align_down(g_img.min_vaddr + bias, kPageSize);
  vm_brk_init(hi);
  const uint64_t sp = build_stack(f, argc, argv, bias);
  klog("app: /%s %s entry=0x%lx image=[0x%lx,0x%lx) brk=0x%lx, entering ring 3 at %lu ms", f->name,
       g_img.pie ? "static-pie" : "static", g_img.entry + bias, lo, hi, hi, monotonic_ns() / 1000000);
  if (g_copy.len) {
    g_copy.entry = g_img.entry + bias;
    enter_user_copy(sp, g_copy);
  }
  enter_user(g_img.entry + bias, sp);
}

}  // namespace bf::kern

#include "kernel/mm/vm.h"

#include "kernel/arch/cpu.h"
#include "kernel/arch/x86.h"
#include "kernel/lib/errno.h"
#include "kernel/lib/kstring.h"
#include "kernel/lib/layout.h"
#include "kernel/lib/log.h"
#include "kernel/mm/phys.h"

extern "C" char syscall_entry[], syscall_scratch_page[], user_start_stub[];

namespace bf::kern {
namespace {

PageTables g_pt;

uint64_t alloc_table(void*) { return phys_alloc_table_page(); }
void* to_ptr(void*, uint64_t p) { return phys_to_ptr(p); }

// A user mapping backed by physically contiguous frames: [va, va+len) <-> [phys, phys+len).
struct Region {
  uint64_t va, len, phys;
  bool owned;  // frames belong to the region (freed on unmap) vs borrowed (boot modules)
};
constexpr unsigned kMaxRegions = 1024;
Region g_regions[kMaxRegions];
unsigned g_nregions = 0;
uint64_t g_mmap_next = kMmapBase;

uint64_t g_brk_base = 0, g_brk_cur = 0, g_brk_mapped = 0;

uint64_t frame_align(uint64_t len) { return len >= kLargePageSize ? kLargePageSize : kPageSize; }

bool range_ok(uint64_t addr, uint64_t len) {
  return !(addr & (kPageSize - 1)) && len && addr >= kUserMin && addr < kUserTop && len <= kUserTop - addr;
}

// Drops [addr, addr+len) from the tables and the region list, freeing owned frames. Regions only
// partly inside the range keep their outside parts, so exactly the range asked goes (Linux munmap /
// MAP_FIXED semantics). Returns false when the region list has no slot for the second piece of a
// region cut in two (Linux: ENOMEM past vm.max_map_count) or when splitting a large page at an edge
// finds no frame for the new table; in both cases no frame is freed while still mapped.
bool remove_span(uint64_t addr, uint64_t len) {
  const uint64_t end = addr + len;
  KASSERT(end > addr);
  // Regions never overlap, so at most one region strictly contains the range and needs a slot.
  for (unsigned i = 0; i < g_nregions; ++i) {
    const Region& r = g_regions[i];
    if (r.va < addr && end < r.va + r.len && g_nregions == kMaxRegions) return false;
  }
  // The tables first: a failed split leaves part of the range unmapped but every frame still
  // recorded (a leak until the next unmap of the range, never a mapped frame handed out again).
  const bool unmapped = g_pt.unmap(addr, len);
  x86::flush_tlb();
  if (!unmapped) return false;
  const unsigned before = g_nregions;
  // Bounded: a visit either skips a slot or replaces its region by at most two pieces outside the
  // range (skipped when reached), so there are at most 3 * before + 2 visits.
  for (unsigned i = 0, visits = 0; i < g_nregions; ++i) {
    KASSERT(++visits <= 3 * before + 2);
    const Region r = g_regions[i];
    const uint64_t s = r.va > addr ? r.va : addr, e = r.va + r.len < end ? r.va + r.len : end;
    if (s >= e) continue;
    if (r.owned) phys_free(r.phys + (s - r.va), e - s);
    g_regions[i] = g_regions[--g_nregions];
    --i;  // revisit this slot; the pieces appended below lie outside [addr, end)
    if (s > r.va) {
      KASSERT(g_nregions < kMaxRegions);
      g_regions[g_nregions++] = {r.va, s - r.va, r.phys, r.owned};
    }
    if (e < r.va + r.len) {
      KASSERT(g_nregions < kMaxRegions);  // the slot check above
      g_regions[g_nregions++] = {e, r.va + r.len - e, r.phys + (e - r.va), r.owned};
    }
  }
  return true;
}

int64_t place(uint64_t addr, uint64_t len, bool fixed, uint64_t align) {
  if (fixed) {
    if (!range_ok(addr, len)) return -EINVAL;
    if (!remove_span(addr, len)) return -ENOMEM;
    return int64_t(addr);
  }
  // Past every region the range would overlap (MAP_FIXED may have put one above the cursor: the
  // cursor used to land on it, replacing its pages). Regions never overlap each other, so each
  // move passes a different region: at most g_nregions moves.
  uint64_t va = align_up(g_mmap_next, align);
  for (unsigned moves = 0;; ++moves) {
    KASSERT(moves <= g_nregions);
    if (va < g_mmap_next || va + len > kMmapTop || va + len < va) return -ENOMEM;
    bool moved = false;
    for (unsigned i = 0; i < g_nregions && !moved; ++i) {
      const Region& r = g_regions[i];
      if (r.va < va + len && va < r.va + r.len) va = align_up(r.va + r.len, align), moved = true;
    }
    if (!moved) break;
  }
  g_mmap_next = va + len;
  return int64_t(va);
}

int64_t add_region(uint64_t va, uint64_t len, uint64_t phys, bool owned, uint64_t flags, bool small_pages = false) {
  if (g_nregions == kMaxRegions) return -ENOMEM;
  if (!g_pt.map(va, phys, len, flags, !small_pages)) {
    // Out of table frames part of the way: drop what was mapped, since the caller frees the
    // frames (leaving them mapped would hand ring 3 frames the allocator gives out again). The
    // range was free of other mappings, so no large page needs splitting and this cannot fail.
    KASSERT(g_pt.unmap(va, len));
    x86::flush_tlb();
    return -ENOMEM;
  }
  g_regions[g_nregions++] = {va, len, phys, owned};
  return int64_t(va);
}

}  // namespace

void vm_init() {
  const uint64_t root = phys_alloc_table_page();
  KASSERT(root);
  g_pt = PageTables(PtAllocator{nullptr, alloc_table, to_ptr}, root);
  // Kernel image: identity, 4 KiB pages so page 0 stays unmapped (null dereferences in ring 0 fault).
  KASSERT(g_pt.map(kPageSize, kPageSize, kKernelIdentityEnd - kPageSize, kPteW | kPteG, false));
  // Direct map of all RAM below phys_top, 2 MiB pages.
  const uint64_t top = align_up(phys_top(), kLargePageSize);
  KASSERT(g_pt.map(kDirectMapBase, 0, top, kPteW | kPteG | kPteNx));
  {
    // The ring-3 start stub (app/user_stub.cpp): user-executable, read-only.
    const uint64_t p = uint64_t(user_start_stub);
    KASSERT(g_pt.map(p, p, kPageSize, kPteG | kPteU, false));
  }
  if (g_cpu.apic) {
    // The local APIC's registers, uncached, in the direct-map window.
    const uint64_t base = x86::rdmsr(0x1B) & 0xFFFFFF000ull;
    KASSERT(g_pt.map(kDirectMapBase + base, base, kPageSize, kPteW | kPteNx | kPtePcd | kPtePwt | kPteG, false));
  }
  if (g_user_entry) {
    // The syscall entry code page user-executable (read-only) and its scratch page user-writable
    // (NX): see syscall/entry.cpp.
    const uint64_t e = uint64_t(syscall_entry), s = uint64_t(syscall_scratch_page);
    KASSERT(g_pt.map(e, e, kPageSize, kPteG | kPteU, false));
    KASSERT(g_pt.map(s, s, kPageSize, kPteG | kPteU | kPteW | kPteNx, false));
  }
  x86::write_cr3(root);
}

PageTables& vm_tables() { return g_pt; }

void* vm_map_device(uint64_t phys, uint64_t len) {
  const uint64_t lo = align_down(phys, kPageSize), hi = align_up(phys + len, kPageSize);
  if (!g_pt.map(kDirectMapBase + lo, lo, hi - lo, kPteW | kPteNx | kPtePcd | kPtePwt | kPteG, false)) return nullptr;
  x86::flush_tlb();
  return phys_to_ptr(phys);
}

uint64_t vm_prot_flags(int prot) {
  if (prot == 0) return kPteNx;  // supervisor-only: reserved, inaccessible to ring 3
  uint64_t f = kPteU;
  if (prot & 2) f |= kPteW;
  if (!(prot & 4)) f |= kPteNx;
  return f;
}

int64_t vm_map_anon(uint64_t addr, uint64_t len, uint64_t flags, bool fixed) {
  len = align_up(len, kPageSize);
  if (len == 0 || len > (1ull << 40)) return -EINVAL;
  const uint64_t align = frame_align(len);
  const uint64_t phys = phys_alloc_zeroed(len, align);
  if (!phys) return -ENOMEM;
  const int64_t va = place(addr, len, fixed, align);
  if (va < 0) {
    phys_free(phys, len);
    return va;
  }
  const int64_t r = add_region(uint64_t(va), len, phys, true, flags);
  if (r < 0) phys_free(phys, len);
  return r;
}

int64_t vm_map_frames(uint64_t addr, uint64_t phys, uint64_t len, uint64_t flags, bool fixed, bool small_pages) {
  len = align_up(len, kPageSize);
  if (len == 0) return -EINVAL;
  if (fixed) {
    // Exactly [addr, addr+len) is replaced, nothing beyond it (row 10: the 2 MiB of slack below
    // used to be removed here too, unmapping the neighbouring memory).
    const int64_t va = place(addr, len, true, kPageSize);
    if (va < 0) return va;
    return add_region(uint64_t(va), len, phys, false, flags, small_pages);
  }
  // Keep the virtual address congruent with the frames modulo 2 MiB so large pages can be used:
  // reserve 2 MiB of slack and start at the frames' offset inside it.
  const int64_t va = place(addr, len + kLargePageSize, false, kLargePageSize);
  if (va < 0) return va;
  return add_region(uint64_t(va) + (phys & (kLargePageSize - 1)), len, phys, false, flags, small_pages);
}

bool vm_map_fixed_owned(uint64_t addr, uint64_t len, uint64_t flags, uint64_t* phys_out) {
  len = align_up(len, kPageSize);
  const uint64_t phys = phys_alloc_zeroed(len, frame_align(len));
  if (!phys) return false;
  if (add_region(addr, len, phys, true, flags) < 0) {
    phys_free(phys, len);
    return false;
  }
  if (phys_out) *phys_out = phys;
  return true;
}

int64_t vm_unmap(uint64_t addr, uint64_t len) {
  len = align_up(len, kPageSize);
  if (!range_ok(addr, len)) return -EINVAL;
  if (!remove_span(addr, len)) return -ENOMEM;
  return 0;
}

int64_t vm_protect(uint64_t addr, uint64_t len, uint64_t flags) {
  len = align_up(len, kPageSize);
  if (len == 0) return 0;
  if (!range_ok(addr, len)) return -EINVAL;
  if (flags & kPteW) {
    // Boot-module frames are shared, read-only file contents: never writable.
    for (unsigned i = 0; i < g_nregions; ++i) {
      const Region& r = g_regions[i];
      if (!r.owned && r.va < addr + len && addr < r.va + r.len) return -EACCES;
    }
  }
  if (!g_pt.protect(addr, len, flags)) return -ENOMEM;
  x86::flush_tlb();
  return 0;
}

void vm_brk_init(uint64_t base) { g_brk_base = g_brk_cur = g_brk_mapped = align_up(base, kLargePageSize); }

uint64_t vm_brk(uint64_t want) {
  if (want < g_brk_base || want > g_brk_base + (64ull << 30)) return g_brk_cur;
  const uint64_t mapped_before = g_brk_mapped;
  if (want > g_brk_mapped) {
    // Grow in 2 MiB steps mapped with large pages; freshly allocated frames are zeroed.
    const uint64_t grow = align_up(want, kLargePageSize) - g_brk_mapped;
    if (!vm_map_fixed_owned(g_brk_mapped, grow, kPteU | kPteW | kPteNx, nullptr)) return g_brk_cur;
    g_brk_mapped += grow;
  }
  // Memory given back by a shrink and taken again must read as zero (glibc's calloc relies on it).
  const uint64_t dirty_end = want < mapped_before ? want : mapped_before;
  if (dirty_end > g_brk_cur) memset(reinterpret_cast<void*>(g_brk_cur), 0, dirty_end - g_brk_cur);
  g_brk_cur = want;
  return g_brk_cur;
}


bool vm_range_used(uint64_t addr, uint64_t len) {
  for (unsigned i = 0; i < g_nregions; ++i)
    if (g_regions[i].va < addr + len && addr < g_regions[i].va + g_regions[i].len) return true;
  PtMapping m;  // brk, stack and image pages are mapped without a region record in some paths
  for (uint64_t v = align_down(addr, kPageSize); v < addr + len && v - addr < (1ull << 30); v += kPageSize)
    if (g_pt.translate(v, &m) && (m.flags & kPteU)) return true;
  return false;
}

}  // namespace bf::kern

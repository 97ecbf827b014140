#include "kernel/mm/phys.h"

#include "kernel/lib/kstring.h"
#include "kernel/lib/log.h"

namespace bf::kern {
namespace {

constexpr unsigned kMaxRanges = 256;
struct Range {
  uint64_t base, end;
  bool dirty;  // may hold old data; clean frames are known to read as zero
};
Range g_free[kMaxRanges];
unsigned g_nfree = 0;
uint64_t g_top = 0;
uint64_t g_pool = 0, g_pool_end = 0;  // page-table frame pool

void add_range(uint64_t base, uint64_t end, bool dirty) {
  if (end <= base) return;
  if (g_nfree == kMaxRanges) {
    klog("phys: free list full, dropping %lu KiB", (end - base) >> 10);
    return;
  }
  g_free[g_nfree++] = {base, end, dirty};
}

void remove_range(uint64_t base, uint64_t end) {
  for (unsigned i = 0; i < g_nfree; ++i) {
    const Range r = g_free[i];
    if (end <= r.base || base >= r.end) continue;
    g_free[i] = g_free[--g_nfree];  // remove, then add back the parts outside [base, end)
    add_range(r.base, base < r.base ? r.base : base, r.dirty);
    add_range(end > r.end ? r.end : end, r.end, r.dirty);
    --i;  // re-examine the slot that now holds a different range (bounded: ranges only shrink)
  }
}

}  // namespace

void phys_init(const BootInfo& bi, uint64_t clean_above) {
  for (unsigned i = 0; i < bi.navail; ++i) {
    uint64_t b = align_up(bi.avail[i].base, kPageSize), e = align_down(bi.avail[i].base + bi.avail[i].len, kPageSize);
    if (b < kKernelIdentityEnd) b = kKernelIdentityEnd;
    if (e <= b) continue;
    const uint64_t split = clean_above < b ? b : clean_above > e ? e : clean_above;
    add_range(b, split, true);
    add_range(split, e, false);
    if (e > g_top) g_top = e;
  }
  for (unsigned i = 0; i < bi.nmods; ++i)
    remove_range(align_down(bi.mods[i].start, kPageSize), align_up(bi.mods[i].end, kPageSize));
}

uint64_t phys_alloc(uint64_t size, uint64_t align, bool* dirty) {
  size = align_up(size, kPageSize);
  if (size == 0) return 0;
  // Best fit on the leftover space keeps big contiguous ranges for big requests.
  int best = -1;
  uint64_t best_left = ~0ull;
  for (unsigned i = 0; i < g_nfree; ++i) {
    const uint64_t a = align_up(g_free[i].base, align);
    if (a < g_free[i].base || a + size > g_free[i].end || a + size < a) continue;
    // Best fit on the leftover space keeps big ranges for big requests; clean memory is
    // preferred (no zeroing needed).
    const uint64_t left = (g_free[i].end - g_free[i].base - size) | (g_free[i].dirty ? 1ull << 62 : 0);
    if (left < best_left) best = int(i), best_left = left;
  }
  if (best < 0) return 0;
  const Range r = g_free[best];
  const uint64_t a = align_up(r.base, align);
  g_free[best] = g_free[--g_nfree];
  add_range(r.base, a, r.dirty);
  add_range(a + size, r.end, r.dirty);
  if (dirty) *dirty = r.dirty;
  return a;
}

void phys_free(uint64_t base, uint64_t size) {
  size = align_up(size, kPageSize);
  // Merge with a neighbour when possible so the list stays short.
  for (unsigned i = 0; i < g_nfree; ++i) {
    if (!g_free[i].dirty) continue;
    if (g_free[i].end == base) return void(g_free[i].end += size);
    if (g_free[i].base == base + size) return void(g_free[i].base = base);
  }
  add_range(base, base + size, true);
}

uint64_t phys_alloc_table_page() {
  if (g_pool == g_pool_end) {
    const uint64_t chunk = 256 * kPageSize;  // 1 MiB of table frames at a time
    g_pool = phys_alloc_zeroed(chunk, kPageSize);
    if (!g_pool) return 0;
    g_pool_end = g_pool + chunk;
  }
  const uint64_t p = g_pool;
  g_pool += kPageSize;
  return p;
}

uint64_t phys_alloc_zeroed(uint64_t size, uint64_t align) {
  bool dirty = true;
  const uint64_t p = phys_alloc(size, align, &dirty);
  if (p && dirty) memset(phys_to_ptr(p), 0, align_up(size, kPageSize));
  return p;
}

uint64_t phys_free_bytes() {
  uint64_t n = 0;
  for (unsigned i = 0; i < g_nfree; ++i) n += g_free[i].end - g_free[i].base;
  return n;
}

uint64_t phys_top() { return g_top; }

}  // namespace bf::kern

#include "kernel/arch/paging.h"

#include "kernel/lib/layout.h"

namespace bf::kern {
namespace {

constexpr uint64_t kTableFlags = kPteP | kPteW | kPteU;  // leaves decide the real permissions

inline unsigned index_at(uint64_t virt, int level) { return unsigned(virt >> (12 + 9 * (level - 1))) & 511; }
inline uint64_t level_size(int level) { return 1ull << (12 + 9 * (level - 1)); }

}  // namespace

bool PageTables::split(uint64_t* entry, int level) {
  // entry is a large leaf at level 2 (2 MiB) or 3 (1 GiB): replace it by a table of smaller leaves.
  const uint64_t frame = a_.alloc_page(a_.ctx);
  if (!frame) return false;
  uint64_t* t = table(frame);
  const uint64_t base = *entry & kPteAddr & ~(level_size(level) - 1);
  const uint64_t flags = *entry & (kPteLeafFlags | kPteP);
  const uint64_t child = level_size(level - 1);
  for (unsigned i = 0; i < 512; ++i) t[i] = (base + i * child) | flags | (level - 1 > 1 ? kPtePs : 0);
  *entry = frame | kTableFlags;
  return true;
}

uint64_t* PageTables::walk_create(uint64_t virt, int level) {
  uint64_t* t = table(root_);
  for (int l = 4; l > level; --l) {
    uint64_t* e = &t[index_at(virt, l)];
    if (!(*e & kPteP)) {
      const uint64_t frame = a_.alloc_page(a_.ctx);
      if (!frame) return nullptr;
      *e = frame | kTableFlags;
    } else if (*e & kPtePs) {
      if (!split(e, l)) return nullptr;
    }
    t = table(*e & kPteAddr);
  }
  return &t[index_at(virt, level)];
}

bool PageTables::map(uint64_t virt, uint64_t phys, uint64_t len, uint64_t flags, bool allow_large) {
  if ((virt | phys | len) & (kPageSize - 1)) return false;
  if (virt + len < virt || !is_canonical(virt) || !is_canonical(virt + len - (len ? 1 : 0))) return false;
  if (flags & ~kPteLeafFlags) return false;
  // Bounded: at most len / 4 KiB iterations.
  while (len) {
    const bool large = allow_large && !(virt & (kLargePageSize - 1)) && !(phys & (kLargePageSize - 1)) &&
                       len >= kLargePageSize;
    uint64_t* e = walk_create(virt, large ? 2 : 1);
    if (!e) return false;
    // A 2 MiB leaf replacing a table of 4 KiB leaves leaks that table frame: rare (remapping a
    // previously split region), bounded by the number of such remaps.
    *e = phys | flags | kPteP | (large ? kPtePs : 0);
    const uint64_t step = large ? kLargePageSize : kPageSize;
    virt += step, phys += step, len -= step;
    if (!large) {
      // Fill the rest of this page table without walking again (ring 0 is slow under nested
      // virtualization: one walk per 2 MiB instead of per 4 KiB), up to the next 2 MiB boundary
      // or the point where a large page becomes possible.
      while (len && (virt & (kLargePageSize - 1)) &&
             !(allow_large && !(phys & (kLargePageSize - 1)) && len >= kLargePageSize)) {
        *++e = phys | flags | kPteP;
        virt += kPageSize, phys += kPageSize, len -= kPageSize;
      }
    }
  }
  return true;
}

bool PageTables::apply(uint64_t virt, uint64_t len, Op op, uint64_t flags) {
  if ((virt | len) & (kPageSize - 1)) return false;
  if (virt + len < virt || !is_canonical(virt)) return false;
  while (len) {
    // Find the leaf covering virt without creating tables.
    uint64_t* t = table(root_);
    int level = 4;
    uint64_t* e = nullptr;
    for (;; --level) {
      e = &t[index_at(virt, level)];
      if (!(*e & kPteP) || level == 1 || (*e & kPtePs)) break;
      t = table(*e & kPteAddr);
    }
    const uint64_t size = level_size(level);
    const uint64_t start = virt & ~(size - 1);
    if (!(*e & kPteP)) {
      // Hole: skip to the end of what this entry would cover.
      const uint64_t next = start + size;
      if (next - virt >= len) return true;
      len -= next - virt, virt = next;
      continue;
    }
    if (level > 1 && (virt != start || len < size)) {
      // Partially covered large page: split it and retry at the finer level.
      if (!split(e, level)) return false;
      continue;
    }
    if (op == Op::kUnmap) *e = 0;
    else *e = (*e & ~(kPteLeafFlags)) | flags;
    virt += size, len -= size;
  }
  return true;
}

bool PageTables::unmap(uint64_t virt, uint64_t len) { return apply(virt, len, Op::kUnmap, 0); }

bool PageTables::protect(uint64_t virt, uint64_t len, uint64_t flags) {
  if (flags & ~kPteLeafFlags) return false;
  return apply(virt, len, Op::kProtect, flags);
}

bool PageTables::translate(uint64_t virt, PtMapping* out) const {
  if (!is_canonical(virt)) return false;
  const uint64_t* t = table(root_);
  uint64_t w = kPteW, u = kPteU, nx = 0;
  for (int level = 4; level >= 1; --level) {
    const uint64_t e = t[index_at(virt, level)];
    if (!(e & kPteP)) return false;
    w &= e, u &= e, nx |= e & kPteNx;
    if (level == 1 || (e & kPtePs)) {
      const uint64_t size = level_size(level);
      out->phys = (e & kPteAddr & ~(size - 1)) + (virt & (size - 1));
      out->flags = kPteP | w | u | nx | (e & kPteG);
      out->page_size = size;
      out->accessed = (e & kPteA) != 0;
      return true;
    }
    t = table(e & kPteAddr);
  }
  return false;
}

}  // namespace bf::kern

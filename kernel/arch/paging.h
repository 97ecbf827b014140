// The 4-level x86-64 page-table builder. It manipulates tables through a caller-provided allocator
// and physical-to-pointer translation, so the same code runs in the kernel (frames from the physical
// allocator, reached through the direct map) and in host unit tests (frames from an arena).
#pragma once
#include <stdint.h>

namespace bf::kern {

// Page-table entry bits (Intel SDM vol. 3, 4.5).
constexpr uint64_t kPteP = 1ull << 0;
constexpr uint64_t kPteW = 1ull << 1;
constexpr uint64_t kPteU = 1ull << 2;
constexpr uint64_t kPtePwt = 1ull << 3;
constexpr uint64_t kPtePcd = 1ull << 4;  // with PWT: uncached (device registers)
constexpr uint64_t kPteA = 1ull << 5;    // accessed: set by the CPU on the first use through the entry
constexpr uint64_t kPtePs = 1ull << 7;  // large page (in a PD or PDPT entry)
constexpr uint64_t kPteG = 1ull << 8;
constexpr uint64_t kPteNx = 1ull << 63;
constexpr uint64_t kPteAddr = 0x000ffffffffff000ull;
constexpr uint64_t kPteLeafFlags = kPteW | kPteU | kPtePwt | kPtePcd | kPteG | kPteNx;  // what map() callers choose

struct PtAllocator {
  void* ctx;
  uint64_t (*alloc_page)(void* ctx);              // a zeroed 4 KiB frame, or 0 when out of memory
  void* (*to_ptr)(void* ctx, uint64_t phys);      // where the kernel (or the test) reaches that frame
};

struct PtMapping {
  uint64_t phys;   // physical address of virt (not of the page)
  uint64_t flags;  // effective: W and U only if set at every level, NX if set at any
  uint64_t page_size;
  bool accessed;  // the leaf entry's A bit
};

class PageTables {
 public:
  PageTables() = default;
  PageTables(const PtAllocator& a, uint64_t root) : a_(a), root_(root) {}
  uint64_t root() const { return root_; }

  // Maps [virt, virt+len) to [phys, phys+len) with leaf flags (subset of kPteLeafFlags); present is
  // implied. 2 MiB pages are used wherever virt, phys and the remaining length allow it and
  // allow_large is set. Existing mappings in the range are replaced (large pages split as needed).
  // Returns false on bad arguments or when a table frame cannot be allocated.
  bool map(uint64_t virt, uint64_t phys, uint64_t len, uint64_t flags, bool allow_large = true);
  // Removes mappings in [virt, virt+len) (page aligned), splitting large pages at the edges.
  bool unmap(uint64_t virt, uint64_t len);
  // Replaces the leaf flags of every mapped page in the range; unmapped holes are left alone.
  bool protect(uint64_t virt, uint64_t len, uint64_t flags);
  // Walks the tables for virt.
  bool translate(uint64_t virt, PtMapping* out) const;

 private:
  uint64_t* table(uint64_t phys) const { return static_cast<uint64_t*>(a_.to_ptr(a_.ctx, phys)); }
  // Returns the entry for virt at the given level (3 = PDPT, 2 = PD, 1 = PT) creating tables on
  // the way; splits a large page found above that level.
  uint64_t* walk_create(uint64_t virt, int level);
  bool split(uint64_t* entry, int level);
  enum class Op { kUnmap, kProtect };
  bool apply(uint64_t virt, uint64_t len, Op op, uint64_t flags);

  PtAllocator a_{};
  uint64_t root_ = 0;
};

// True if virt is canonical and page-aligned arithmetic on it cannot overflow.
constexpr bool is_canonical(uint64_t v) {
  return v < 0x0000800000000000ull || v >= 0xffff800000000000ull;
}

}  // namespace bf::kern

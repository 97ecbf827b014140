// A host memory arena that plays physical memory for the page-table builder.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kernel/arch/paging.h"

struct Arena {
  static constexpr uint64_t kBase = 0x100000;  // fake physical address of the first frame
  std::vector<uint8_t> mem;
  uint64_t next = 0;
  unsigned limit;
  explicit Arena(unsigned frames = 256) : mem((frames + 1) * 4096), limit(frames) {}
  uint8_t* base() { return reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(mem.data()) + 4095) & ~uintptr_t(4095)); }
  static uint64_t alloc(void* ctx) {
    auto* a = static_cast<Arena*>(ctx);
    if (a->next / 4096 >= a->limit) return 0;
    const uint64_t p = kBase + a->next;
    std::memset(a->base() + a->next, 0, 4096);
    a->next += 4096;
    return p;
  }
  static void* to_ptr(void* ctx, uint64_t phys) { return static_cast<Arena*>(ctx)->base() + (phys - kBase); }
  bf::kern::PtAllocator allocator() { return {this, alloc, to_ptr}; }
  unsigned used() const { return unsigned(next / 4096); }
};

inline bf::kern::PageTables make_tables(Arena& a) {
  const uint64_t root = Arena::alloc(&a);
  return bf::kern::PageTables(a.allocator(), root);
}

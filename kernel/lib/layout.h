// Address-space layout shared by the kernel and its host unit tests.
#pragma once
#include <stdint.h>

namespace bf::kern {

constexpr uint64_t kPageSize = 4096;
constexpr uint64_t kLargePageSize = 2ull << 20;  // 2 MiB

// Physical memory is mapped at kDirectMapBase (PML4 slot 256, supervisor, NX): the kernel reaches
// boot modules, page tables and user frames through it. The kernel image itself is identity mapped in
// the first 2 MiB (page 0 left unmapped to catch null dereferences in ring 0).
constexpr uint64_t kDirectMapBase = 0xffff800000000000ull;
constexpr uint64_t kKernelIdentityEnd = 2ull << 20;

// User (ring 3) virtual address window: everything the application may touch lies in it.
constexpr uint64_t kUserMin = kKernelIdentityEnd;
constexpr uint64_t kUserTop = 0x00007ffffffff000ull;
constexpr uint64_t kPieBase = 0x0000000010000000ull;   // load bias for static-pie executables
constexpr uint64_t kMmapBase = 0x0000010000000000ull;  // 1 TiB: anonymous and file mappings grow up from here
constexpr uint64_t kMmapTop = 0x00007f0000000000ull;
constexpr uint64_t kStackTop = 0x00007ffffe000000ull;  // 2 MiB aligned
constexpr uint64_t kStackSize = 8ull << 20;

constexpr uint64_t align_down(uint64_t v, uint64_t a) { return v & ~(a - 1); }
constexpr uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }

}  // namespace bf::kern

// What the kernel keeps from the boot loader: copied out of the Multiboot1/Multiboot2 information
// into kernel memory first thing, so the loader's structures can be reused as free memory.
#pragma once
#include <stdint.h>

namespace bf::kern {

constexpr uint32_t kMultiboot1Magic = 0x2BADB002;
constexpr uint32_t kMultiboot2Magic = 0x36d76289;
constexpr unsigned kMaxModules = 16;
constexpr unsigned kMaxMemRanges = 64;
constexpr unsigned kCmdlineMax = 4096;
constexpr unsigned kModNameMax = 64;

struct BootModule {
  uint64_t start, end;  // physical [start, end)
  char name[kModNameMax];
};

struct MemRange {
  uint64_t base, len;
};

struct BootInfo {
  const char* protocol;
  char loader[64];
  char cmdline[kCmdlineMax];
  MemRange avail[kMaxMemRanges];
  unsigned navail;
  BootModule mods[kMaxModules];
  unsigned nmods;
};

// Returns nullptr on success or a reason the boot information is unusable.
const char* parse_boot_info(uint32_t magic, uint64_t info_phys, BootInfo* out);

}  // namespace bf::kern

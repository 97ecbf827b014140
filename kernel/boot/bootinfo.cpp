#include "kernel/boot/bootinfo.h"

#include "kernel/lib/kstring.h"
#include "kernel/lib/layout.h"
#include "kernel/lib/log.h"

namespace bf::kern {
namespace {

template <typename T>
T rd(uint64_t phys) {
  T v;
  memcpy(&v, reinterpret_cast<const void*>(kDirectMapBase + phys), sizeof(T));
  return v;
}

void copy_str(char* dst, unsigned cap, uint64_t phys) {
  const char* s = reinterpret_cast<const char*>(kDirectMapBase + phys);
  kstrlcpy(dst, s, cap);
}

// Module name: the basename of the last word of the module's command line. QEMU passes
// "hostpath guestname" (or just "hostpath"); GRUB passes what follows the file name.
void module_name(char* dst, uint64_t cmd_phys, unsigned index) {
  char tmp[256];
  if (cmd_phys) copy_str(tmp, sizeof tmp, cmd_phys);
  else tmp[0] = 0;
  int end = int(strlen(tmp));
  while (end > 0 && tmp[end - 1] == ' ') --end;
  int start = end;
  while (start > 0 && tmp[start - 1] != ' ' && tmp[start - 1] != '/') --start;
  if (end == start) {
    ksnprintf(dst, kModNameMax, "module%u", index);
    return;
  }
  tmp[end] = 0;
  kstrlcpy(dst, tmp + start, kModNameMax);
}

void add_avail(BootInfo* bi, uint64_t base, uint64_t len) {
  if (bi->navail < kMaxMemRanges && len) bi->avail[bi->navail++] = {base, len};
}

void add_module(BootInfo* bi, uint64_t start, uint64_t end, uint64_t cmd) {
  if (bi->nmods >= kMaxModules || end < start) return;
  BootModule& m = bi->mods[bi->nmods];
  m.start = start, m.end = end;
  module_name(m.name, cmd, bi->nmods);
  ++bi->nmods;
}

}  // namespace

const char* parse_boot_info(uint32_t magic, uint64_t info, BootInfo* bi) {
  memset(bi, 0, sizeof *bi);
  if (info == 0 || info >= (4ull << 30)) return "no boot information";
  if (magic == kMultiboot1Magic) {
    bi->protocol = "multiboot1";
    const uint32_t flags = rd<uint32_t>(info);
    if ((flags & (1 << 2)) && rd<uint32_t>(info + 16)) copy_str(bi->cmdline, kCmdlineMax, rd<uint32_t>(info + 16));
    if (flags & (1 << 9)) copy_str(bi->loader, sizeof bi->loader, rd<uint32_t>(info + 64));
    if (flags & (1 << 3)) {
      const uint32_t count = rd<uint32_t>(info + 20), addr = rd<uint32_t>(info + 24);
      for (uint32_t i = 0; i < count && i < kMaxModules; ++i)
        add_module(bi, rd<uint32_t>(addr + 16 * i), rd<uint32_t>(addr + 16 * i + 4), rd<uint32_t>(addr + 16 * i + 8));
    }
    if (!(flags & (1 << 6))) return "the boot loader gave no memory map";
    const uint32_t len = rd<uint32_t>(info + 44), addr = rd<uint32_t>(info + 48);
    for (uint32_t off = 0, n = 0; off + 24 <= len && n < 256; ++n) {
      const uint32_t size = rd<uint32_t>(addr + off);
      if (rd<uint32_t>(addr + off + 20) == 1) add_avail(bi, rd<uint64_t>(addr + off + 4), rd<uint64_t>(addr + off + 12));
      off += size + 4;
    }
  } else if (magic == kMultiboot2Magic) {
    bi->protocol = "multiboot2";
    const uint32_t total = rd<uint32_t>(info);
    if (total < 16 || total > (1u << 20)) return "bad multiboot2 information size";
    for (uint32_t off = 8, n = 0; off + 8 <= total && n < 512; ++n) {
      const uint32_t type = rd<uint32_t>(info + off), size = rd<uint32_t>(info + off + 4);
      if (type == 0 || size < 8) break;
      const uint64_t tag = info + off;
      if (type == 1) copy_str(bi->cmdline, kCmdlineMax, tag + 8);
      if (type == 2) copy_str(bi->loader, sizeof bi->loader, tag + 8);
      if (type == 3) add_module(bi, rd<uint32_t>(tag + 8), rd<uint32_t>(tag + 12), tag + 16);
      if (type == 6) {
        const uint32_t esize = rd<uint32_t>(tag + 8);
        if (esize >= 24)
          for (uint32_t e = 16; e + esize <= size; e += esize)
            if (rd<uint32_t>(tag + e + 16) == 1) add_avail(bi, rd<uint64_t>(tag + e), rd<uint64_t>(tag + e + 8));
      }
      off += (size + 7) & ~7u;
    }
  } else {
    return "not started by a Multiboot loader (bad magic)";
  }
  if (bi->navail == 0) return "the memory map lists no usable RAM";
  return nullptr;
}

}  // namespace bf::kern

#include "kernel/syscall/uaccess.h"

#include "kernel/lib/layout.h"

namespace bf::kern {

bool user_range_ok(const PageTables& pt, uint64_t addr, uint64_t len, Access access) {
  if (len == 0) return true;
  if (addr < kUserMin || addr >= kUserTop || len > kUserTop - addr) return false;
  const uint64_t end = addr + len;
  uint64_t v = align_down(addr, kPageSize);
  // Steps by the mapping's page size: a 1 GiB buffer in 2 MiB pages is 512 walks.
  while (v < end) {
    PtMapping m;
    if (!pt.translate(v, &m)) return false;
    if (!(m.flags & kPteU)) return false;
    if (access == Access::kWrite && !(m.flags & kPteW)) return false;
    v = align_down(v, m.page_size) + m.page_size;
  }
  return true;
}

int64_t user_strnlen(const PageTables& pt, uint64_t addr, uint64_t max) {
  if (addr < kUserMin || addr >= kUserTop) return -1;
  uint64_t checked_end = addr;  // bytes below this are known readable
  for (uint64_t i = 0; i < max; ++i) {
    const uint64_t p = addr + i;
    if (p >= checked_end) {
      if (p >= kUserTop) return -1;
      PtMapping m;
      if (!pt.translate(p, &m) || !(m.flags & kPteU)) return -1;
      checked_end = align_down(p, m.page_size) + m.page_size;
    }
    if (*reinterpret_cast<const char*>(p) == 0) return int64_t(i);
  }
  return -1;
}

}  // namespace bf::kern

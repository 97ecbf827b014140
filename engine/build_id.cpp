#include "engine/build_id.h"

#include <elf.h>
#include <link.h>

#include <cstring>

namespace bf {

namespace {

// The first object dl_iterate_phdr reports is the executable itself (also in a static binary,
// from the auxiliary vector's AT_PHDR, which the unikernel provides too).
int find_build_id(dl_phdr_info* info, size_t, void* out) {
  std::string& id = *static_cast<std::string*>(out);
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_NOTE) continue;
    const char* p = reinterpret_cast<const char*>(info->dlpi_addr + ph.p_vaddr);
    const char* end = p + ph.p_memsz;
    while (p + sizeof(ElfW(Nhdr)) <= end) {
      const ElfW(Nhdr)* n = reinterpret_cast<const ElfW(Nhdr)*>(p);
      const char* name = p + sizeof *n;
      const char* desc = name + ((n->n_namesz + 3) & ~3u);
      const char* next = desc + ((n->n_descsz + 3) & ~3u);
      if (next > end) break;
      if (n->n_type == NT_GNU_BUILD_ID && n->n_namesz == 4 && std::memcmp(name, "GNU", 4) == 0) {
        static const char hex[] = "0123456789abcdef";
        for (uint32_t k = 0; k < n->n_descsz; k++) {
          id += hex[uint8_t(desc[k]) >> 4];
          id += hex[uint8_t(desc[k]) & 15];
        }
        return 1;
      }
      p = next;
    }
  }
  return 1;  // only the executable
}

}  // namespace

const std::string& engine_build_id() {
  static const std::string id = [] {
    std::string s;
    dl_iterate_phdr(find_build_id, &s);
    return s;
  }();
  return id;
}

}  // namespace bf

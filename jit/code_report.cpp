#include "jit/code_report.h"

#include <elf.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

namespace bf::jit {

namespace {
// Itanium-mangled names in namespace llvm contain "4llvm" (llvm::, templates over llvm types);
// the C API is LLVM*.
bool is_llvm(const char* name) { return std::strstr(name, "4llvm") || std::strncmp(name, "LLVM", 4) == 0; }
}  // namespace

BinaryCode measure_binary_code() {
  BinaryCode b;
  const int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return b;
  struct stat st;
  void* map = fstat(fd, &st) == 0 ? mmap(nullptr, size_t(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0) : MAP_FAILED;
  close(fd);
  if (map == MAP_FAILED) return b;
  const auto* base = static_cast<const uint8_t*>(map);
  const auto* eh = reinterpret_cast<const Elf64_Ehdr*>(base);
  const size_t size = size_t(st.st_size);
  if (size >= sizeof(Elf64_Ehdr) && std::memcmp(eh->e_ident, ELFMAG, SELFMAG) == 0 &&
      eh->e_ident[EI_CLASS] == ELFCLASS64 && eh->e_shoff + uint64_t(eh->e_shnum) * sizeof(Elf64_Shdr) <= size) {
    const auto* sh = reinterpret_cast<const Elf64_Shdr*>(base + eh->e_shoff);
    for (int i = 0; i < eh->e_shnum; i++) {
      if (sh[i].sh_type != SHT_SYMTAB || sh[i].sh_link >= eh->e_shnum) continue;
      const Elf64_Shdr& strtab = sh[sh[i].sh_link];
      if (sh[i].sh_offset + sh[i].sh_size > size || strtab.sh_offset + strtab.sh_size > size) break;
      const auto* syms = reinterpret_cast<const Elf64_Sym*>(base + sh[i].sh_offset);
      const char* names = reinterpret_cast<const char*>(base + strtab.sh_offset);
      for (size_t k = 0; k < sh[i].sh_size / sizeof(Elf64_Sym); k++) {
        if (ELF64_ST_TYPE(syms[k].st_info) != STT_FUNC || syms[k].st_size == 0) continue;
        if (syms[k].st_name >= strtab.sh_size) continue;
        b.functions++;
        b.function_bytes += syms[k].st_size;
        if (is_llvm(names + syms[k].st_name)) {
          b.llvm_functions++;
          b.llvm_bytes += syms[k].st_size;
        }
      }
      b.ok = true;
      break;
    }
  }
  munmap(map, size);
  return b;
}

void print_binary_code(FILE* out, const BinaryCode& b, uint64_t jit_native_bytes, uint64_t bitcode_bytes) {
  if (!b.ok) {
    std::fprintf(out, "code: the executable has no symbol table to measure\n");
  } else {
    std::fprintf(out, "code: executable functions %.1f MB (%llu), of which LLVM %.1f MB (%llu, %.1f%%)\n",
                 double(b.function_bytes) / 1e6, (unsigned long long)b.functions, double(b.llvm_bytes) / 1e6,
                 (unsigned long long)b.llvm_functions,
                 b.function_bytes ? 100.0 * double(b.llvm_bytes) / double(b.function_bytes) : 0.0);
  }
  std::fprintf(out, "code: kernel bitcode embedded %llu B; native code the JIT produced %llu B\n",
               (unsigned long long)bitcode_bytes, (unsigned long long)jit_native_bytes);
}

}  // namespace bf::jit

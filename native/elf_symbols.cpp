#include "native/elf_symbols.h"

#include <elf.h>

#include <cstring>

#include "engine/error.h"
#include "engine/mapped_file.h"

namespace bf::native {

std::vector<FunctionSymbol> function_symbols(const std::string& path) {
  const MappedFile f = MappedFile::open(path);
  const uint8_t* b = f.data();
  const size_t size = f.size();
  Elf64_Ehdr eh;
  if (size < sizeof eh) fail(path, "not an ELF file");
  std::memcpy(&eh, b, sizeof eh);
  if (std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64) fail(path, "not an ELF64 file");
  if (eh.e_shentsize != sizeof(Elf64_Shdr) || eh.e_shoff > size || eh.e_shnum > (size - eh.e_shoff) / sizeof(Elf64_Shdr))
    fail(path, "bad section headers");
  std::vector<Elf64_Shdr> sh(eh.e_shnum);
  std::memcpy(sh.data(), b + eh.e_shoff, sh.size() * sizeof(Elf64_Shdr));
  std::vector<FunctionSymbol> out;
  for (const Elf64_Shdr& s : sh) {
    if (s.sh_type != SHT_SYMTAB) continue;
    if (s.sh_link >= sh.size() || s.sh_offset > size || s.sh_size > size - s.sh_offset) fail(path, "bad symbol table");
    const Elf64_Shdr& strtab = sh[s.sh_link];
    if (strtab.sh_offset > size || strtab.sh_size > size - strtab.sh_offset) fail(path, "bad string table");
    for (uint64_t k = 0; k < s.sh_size / sizeof(Elf64_Sym); k++) {
      Elf64_Sym sym;
      std::memcpy(&sym, b + s.sh_offset + k * sizeof sym, sizeof sym);
      if (ELF64_ST_TYPE(sym.st_info) != STT_FUNC || sym.st_size == 0 || sym.st_name >= strtab.sh_size) continue;
      const char* name = reinterpret_cast<const char*>(b + strtab.sh_offset + sym.st_name);
      out.push_back({sym.st_value, sym.st_size, std::string(name, strnlen(name, strtab.sh_size - sym.st_name)),
                     sym.st_shndx < sh.size() && (sh[sym.st_shndx].sh_flags & SHF_EXECINSTR)});
    }
    break;  // one symbol table
  }
  return out;
}

}  // namespace bf::native

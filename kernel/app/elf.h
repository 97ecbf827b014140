// Parsing and validation of a static (or static-pie) x86-64 ELF executable. Pure: works on a byte
// buffer, allocates nothing, so it is unit-tested on the host with malformed inputs.
#pragma once
#include <stddef.h>
#include <stdint.h>

namespace bf::kern {

struct Elf64Ehdr {
  uint8_t ident[16];
  uint16_t type, machine;
  uint32_t version;
  uint64_t entry, phoff, shoff;
  uint32_t flags;
  uint16_t ehsize, phentsize, phnum, shentsize, shnum, shstrndx;
};
static_assert(sizeof(Elf64Ehdr) == 64);

struct Elf64Phdr {
  uint32_t type, flags;
  uint64_t offset, vaddr, paddr, filesz, memsz, align;
};
static_assert(sizeof(Elf64Phdr) == 56);

constexpr uint32_t kPtLoad = 1, kPtInterp = 3, kPtPhdr = 6, kPtTls = 7;
constexpr uint32_t kPfX = 1, kPfW = 2, kPfR = 4;
constexpr uint16_t kEtExec = 2, kEtDyn = 3;
constexpr uint16_t kEmX86_64 = 62;

constexpr unsigned kMaxSegments = 16;

struct ElfSegment {
  uint64_t vaddr, memsz, offset, filesz;  // vaddr before the load bias
  uint32_t flags;                         // kPf*
};

struct ElfImage {
  bool pie = false;
  uint64_t entry = 0;       // before the load bias
  uint64_t phdr_vaddr = 0;  // where the program headers are in memory (before the bias)
  uint16_t phnum = 0;
  uint64_t min_vaddr = 0, max_vaddr = 0;  // span of the PT_LOAD segments (page aligned)
  ElfSegment segs[kMaxSegments];
  unsigned nsegs = 0;
};

// Validates data[0, size) as an executable BareFlow can run. Returns nullptr on success, otherwise
// a short reason ("not an ELF file", "dynamically linked (PT_INTERP)", ...).
// user_min/user_top bound the addresses a non-PIE image may occupy.
const char* elf_parse(const uint8_t* data, uint64_t size, uint64_t user_min, uint64_t user_top, ElfImage* out);

// The executable's symbol table, for naming addresses in fault reports (empty when stripped).
struct ElfSymbols {
  const uint8_t* syms = nullptr;  // Elf64_Sym array
  uint64_t count = 0;
  const char* strtab = nullptr;
  uint64_t strtab_size = 0;
};

// Finds .symtab/.strtab through the section headers; false if absent or malformed.
bool elf_symbols(const uint8_t* data, uint64_t size, ElfSymbols* out);
// The function containing addr (an unbiased address): its name and addr's offset in it; nullptr
// when no function symbol covers addr. Linear in the number of symbols.
const char* elf_symbolize(const ElfSymbols& s, uint64_t addr, uint64_t* offset);

struct ElfFunction {
  const char* name;
  uint64_t addr, size;  // unbiased
};
// Symbol i if it is a function with a size and a name inside the string table.
bool elf_function(const ElfSymbols& s, uint64_t i, ElfFunction* out);

}  // namespace bf::kern

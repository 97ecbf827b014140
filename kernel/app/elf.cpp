#include "kernel/app/elf.h"

namespace bf::kern {
namespace {

constexpr uint64_t kPage = 4096;

template <typename T>
T load(const uint8_t* p) {
  T v;
  __builtin_memcpy(&v, p, sizeof(T));  // ELF fields may be unaligned in a hostile file
  return v;
}

}  // namespace

const char* elf_parse(const uint8_t* data, uint64_t size, uint64_t user_min, uint64_t user_top, ElfImage* out) {
  *out = ElfImage{};
  if (!data || size < sizeof(Elf64Ehdr)) return "file too small for an ELF header";
  const auto eh = load<Elf64Ehdr>(data);
  if (eh.ident[0] != 0x7f || eh.ident[1] != 'E' || eh.ident[2] != 'L' || eh.ident[3] != 'F') return "not an ELF file";
  if (eh.ident[4] != 2) return "not a 64-bit ELF";
  if (eh.ident[5] != 1) return "not little-endian";
  if (eh.machine != kEmX86_64) return "not an x86-64 executable";
  if (eh.type != kEtExec && eh.type != kEtDyn) return "not an executable (ET_EXEC or ET_DYN)";
  if (eh.phentsize != sizeof(Elf64Phdr)) return "bad program header size";
  if (eh.phnum == 0 || eh.phnum > 64) return "bad program header count";
  if (eh.phoff > size || uint64_t(eh.phnum) * sizeof(Elf64Phdr) > size - eh.phoff) return "program headers outside the file";
  out->pie = eh.type == kEtDyn;
  out->entry = eh.entry;
  out->phnum = eh.phnum;
  uint64_t lo = ~0ull, hi = 0;
  bool have_phdr = false;
  for (unsigned i = 0; i < eh.phnum; ++i) {
    const auto ph = load<Elf64Phdr>(data + eh.phoff + i * sizeof(Elf64Phdr));
    if (ph.type == kPtInterp) return "dynamically linked (PT_INTERP): BareFlow runs static executables";
    if (ph.type == kPtPhdr) out->phdr_vaddr = ph.vaddr, have_phdr = true;
    if (ph.type != kPtLoad || ph.memsz == 0) continue;
    if (out->nsegs == kMaxSegments) return "too many PT_LOAD segments";
    if (ph.filesz > ph.memsz) return "segment file size exceeds memory size";
    if (ph.offset > size || ph.filesz > size - ph.offset) return "segment data outside the file";
    if (ph.vaddr + ph.memsz < ph.vaddr || ph.vaddr + ph.memsz > (1ull << 46)) return "segment address overflow";
    if ((ph.vaddr - ph.offset) % kPage) return "segment not page-congruent with its file offset";
    out->segs[out->nsegs++] = {ph.vaddr, ph.memsz, ph.offset, ph.filesz, ph.flags};
    const uint64_t s = ph.vaddr & ~(kPage - 1), e = (ph.vaddr + ph.memsz + kPage - 1) & ~(kPage - 1);
    if (s < lo) lo = s;
    if (e > hi) hi = e;
  }
  if (out->nsegs == 0) return "no loadable segment";
  // Segments must not overlap: each page belongs to one segment's span except shared edge pages.
  for (unsigned i = 0; i < out->nsegs; ++i)
    for (unsigned j = i + 1; j < out->nsegs; ++j) {
      const ElfSegment &a = out->segs[i], &b = out->segs[j];
      if (a.vaddr < b.vaddr + b.memsz && b.vaddr < a.vaddr + a.memsz) return "overlapping segments";
    }
  out->min_vaddr = lo, out->max_vaddr = hi;
  if (hi - lo > (1ull << 36)) return "image larger than 64 GiB";
  if (!out->pie && (lo < user_min || hi > user_top)) return "segments outside the user address range";
  bool entry_ok = false;
  for (unsigned i = 0; i < out->nsegs; ++i) {
    const ElfSegment& s = out->segs[i];
    if ((s.flags & kPfX) && eh.entry >= s.vaddr && eh.entry < s.vaddr + s.memsz) entry_ok = true;
  }
  if (!entry_ok) return "entry point outside executable segments";
  if (!have_phdr) {
    // No PT_PHDR (common for static executables): find the headers inside a loaded segment.
    for (unsigned i = 0; i < out->nsegs && !have_phdr; ++i) {
      const ElfSegment& s = out->segs[i];
      if (eh.phoff >= s.offset && eh.phoff + eh.phnum * sizeof(Elf64Phdr) <= s.offset + s.filesz)
        out->phdr_vaddr = s.vaddr + (eh.phoff - s.offset), have_phdr = true;
    }
    if (!have_phdr) return "program headers not inside a loaded segment";
  }
  return nullptr;
}

bool elf_symbols(const uint8_t* data, uint64_t size, ElfSymbols* out) {
  *out = ElfSymbols{};
  if (!data || size < sizeof(Elf64Ehdr)) return false;
  const auto eh = load<Elf64Ehdr>(data);
  constexpr uint64_t kShdr = 64;
  if (eh.shentsize != kShdr || eh.shnum == 0 || eh.shnum > 4096) return false;
  if (eh.shoff > size || uint64_t(eh.shnum) * kShdr > size - eh.shoff) return false;
  for (unsigned i = 0; i < eh.shnum; ++i) {
    const uint8_t* sh = data + eh.shoff + i * kShdr;
    if (load<uint32_t>(sh + 4) != 2) continue;  // SHT_SYMTAB
    const uint64_t off = load<uint64_t>(sh + 24), sz = load<uint64_t>(sh + 32);
    const uint32_t link = load<uint32_t>(sh + 40);
    if (off > size || sz > size - off || link >= eh.shnum) return false;
    const uint8_t* st = data + eh.shoff + link * kShdr;
    const uint64_t soff = load<uint64_t>(st + 24), ssz = load<uint64_t>(st + 32);
    if (soff > size || ssz > size - soff) return false;
    out->syms = data + off;
    out->count = sz / 24;
    out->strtab = reinterpret_cast<const char*>(data + soff);
    out->strtab_size = ssz;
    return true;
  }
  return false;
}

namespace {

// The symbol's name if it ends inside the string table, else nullptr.
const char* symbol_name(const ElfSymbols& s, const uint8_t* sym) {
  const uint32_t name = load<uint32_t>(sym);
  if (name >= s.strtab_size) return nullptr;
  for (uint64_t k = name; k < s.strtab_size && k - name < 4096; ++k)
    if (s.strtab[k] == 0) return s.strtab + name;
  return nullptr;
}

}  // namespace

const char* elf_symbolize(const ElfSymbols& s, uint64_t addr, uint64_t* offset) {
  for (uint64_t i = 0; i < s.count; ++i) {
    const uint8_t* sym = s.syms + i * 24;
    if ((sym[4] & 0xf) != 2) continue;  // STT_FUNC
    const uint64_t value = load<uint64_t>(sym + 8), sz = load<uint64_t>(sym + 16);
    if (addr < value || addr - value >= (sz ? sz : 1)) continue;
    const char* name = symbol_name(s, sym);
    if (!name) continue;
    *offset = addr - value;
    return name;
  }
  return nullptr;
}

bool elf_function(const ElfSymbols& s, uint64_t i, ElfFunction* out) {
  if (i >= s.count) return false;
  const uint8_t* sym = s.syms + i * 24;
  if ((sym[4] & 0xf) != 2) return false;  // STT_FUNC
  out->addr = load<uint64_t>(sym + 8);
  out->size = load<uint64_t>(sym + 16);
  out->name = symbol_name(s, sym);
  return out->size > 0 && out->name;
}

}  // namespace bf::kern

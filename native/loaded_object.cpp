#include "native/loaded_object.h"

#include <elf.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cassert>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <map>

#include "engine/error.h"

namespace bf::native {

namespace {

const Symbol kRuntimeSymbols[] = {
    {"memset", reinterpret_cast<const void*>(&std::memset)},
    {"memcpy", reinterpret_cast<const void*>(&std::memcpy)},
    {"memmove", reinterpret_cast<const void*>(&std::memmove)},
    {"sqrtf", reinterpret_cast<const void*>(static_cast<float (*)(float)>(&::sqrtf))},
    {"expf", reinterpret_cast<const void*>(static_cast<float (*)(float)>(&::expf))},
    {"powf", reinterpret_cast<const void*>(static_cast<float (*)(float, float)>(&::powf))},
    {"sinf", reinterpret_cast<const void*>(static_cast<float (*)(float)>(&::sinf))},
    {"cosf", reinterpret_cast<const void*>(static_cast<float (*)(float)>(&::cosf))},
    {"lroundf", reinterpret_cast<const void*>(static_cast<long (*)(float)>(&::lroundf))},
};

// Bounds on what a kernel object may hold: far above what the JIT emits (a few KiB, a handful of
// sections), far below what could exhaust memory.
constexpr uint64_t kMaxSections = 1024;
constexpr uint64_t kMaxImageBytes = 64ull << 20;
constexpr uint64_t kMaxAlign = 4096;
// A call stub for an external function (which may lie beyond a 32-bit displacement from the
// pages the code is copied into): jmp *0(%rip), then the 8-byte address.
constexpr size_t kStubBytes = 16;

[[noreturn]] void bad(const std::string& what) { fail("native object", what); }

// [off, off + len) inside [0, size), without overflow.
bool within(uint64_t off, uint64_t len, uint64_t size) { return off <= size && len <= size - off; }

uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }

// Where a loaded section goes: code pages (read+execute), constant pages (read only, with the
// GOT) and data pages (read+write). Code and constants never share a page with writable data.
enum class Segment : uint8_t { Code, Const, Data };
constexpr size_t kSegments = 3;

struct Placed {
  bool loaded = false;
  Segment seg = Segment::Code;
  uint64_t offset = 0;  // from the segment's start, then (after layout) from the image's start
};

}  // namespace

std::span<const Symbol> runtime_symbols() { return kRuntimeSymbols; }

LoadedObject& LoadedObject::operator=(LoadedObject&& o) noexcept {
  if (this != &o) {
    if (base_) munmap(base_, size_);
    base_ = std::exchange(o.base_, nullptr);
    size_ = std::exchange(o.size_, 0);
    code_bytes_ = std::exchange(o.code_bytes_, 0);
    globals_ = std::move(o.globals_);
  }
  return *this;
}

LoadedObject::~LoadedObject() {
  if (base_) munmap(base_, size_);
}

void* LoadedObject::find(std::string_view name) const {
  for (const auto& [n, addr] : globals_)
    if (n == name) return reinterpret_cast<void*>(addr);
  return nullptr;
}

LoadedObject LoadedObject::load(std::span<const uint8_t> elf, std::span<const Symbol> externals) {
  const uint8_t* const bytes = elf.data();
  const uint64_t size = elf.size();
  Elf64_Ehdr eh;
  if (size < sizeof eh) bad("shorter than an ELF header");
  std::memcpy(&eh, bytes, sizeof eh);
  if (std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0) bad("not an ELF file");
  if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB) bad("not 64-bit little-endian ELF");
  if (eh.e_type != ET_REL) bad("not a relocatable object (e_type " + std::to_string(eh.e_type) + ")");
  if (eh.e_machine != EM_X86_64) bad("not x86-64 code (e_machine " + std::to_string(eh.e_machine) + ")");
  if (eh.e_shentsize != sizeof(Elf64_Shdr)) bad("section header size " + std::to_string(eh.e_shentsize));
  if (eh.e_shnum == 0 || eh.e_shnum > kMaxSections) bad("section count " + std::to_string(eh.e_shnum));
  if (!within(eh.e_shoff, uint64_t(eh.e_shnum) * sizeof(Elf64_Shdr), size)) bad("section headers out of bounds");
  std::vector<Elf64_Shdr> sh(eh.e_shnum);
  std::memcpy(sh.data(), bytes + eh.e_shoff, sh.size() * sizeof(Elf64_Shdr));
  const size_t nsec = sh.size();
  for (size_t i = 0; i < nsec; i++)
    if (sh[i].sh_type != SHT_NOBITS && sh[i].sh_type != SHT_NULL && !within(sh[i].sh_offset, sh[i].sh_size, size))
      bad("section " + std::to_string(i) + " out of bounds");
  if (eh.e_shstrndx >= nsec || sh[eh.e_shstrndx].sh_type != SHT_STRTAB) bad("no section name table");
  // A NUL-terminated string at `off` of string table section `tab`.
  const auto str = [&](size_t tab, uint64_t off) -> std::string_view {
    const Elf64_Shdr& t = sh[tab];
    if (off >= t.sh_size) bad("string offset out of bounds");
    const char* s = reinterpret_cast<const char*>(bytes + t.sh_offset + off);
    const void* nul = std::memchr(s, 0, t.sh_size - off);
    if (!nul) bad("unterminated string");
    return std::string_view(s, size_t(static_cast<const char*>(nul) - s));
  };

  // Layout: which sections are loaded, where.
  std::vector<Placed> place(nsec);
  // The code segment starts with int3 padding: no function begins at its page's first byte, so
  // callers that read the bytes before a function (clang's -fsanitize=function reads 8) stay in
  // mapped memory and find no signature there.
  constexpr uint64_t kCodePadBytes = 16;
  uint64_t seg_size[kSegments] = {};
  seg_size[size_t(Segment::Code)] = kCodePadBytes;
  uint64_t code_bytes = 0;
  size_t symtab = 0;
  for (size_t i = 0; i < nsec; i++) {
    const Elf64_Shdr& s = sh[i];
    if (s.sh_type == SHT_SYMTAB) {
      if (symtab) bad("more than one symbol table");
      symtab = i;
    }
    if (!(s.sh_flags & SHF_ALLOC)) continue;
    // Unwind tables are for debuggers and C++ exceptions, neither of which reaches JIT'd kernels.
    if (s.sh_type == SHT_X86_64_UNWIND || str(eh.e_shstrndx, s.sh_name) == ".eh_frame") continue;
    if (s.sh_type != SHT_PROGBITS && s.sh_type != SHT_NOBITS)
      bad("section " + std::to_string(i) + " has unsupported type " + std::to_string(s.sh_type));
    if (s.sh_flags & SHF_TLS) bad("thread-local sections are not supported");
    const uint64_t align = s.sh_addralign ? s.sh_addralign : 1;
    if (align > kMaxAlign || (align & (align - 1))) bad("section " + std::to_string(i) + " alignment " + std::to_string(align));
    if (s.sh_size > kMaxImageBytes) bad("section " + std::to_string(i) + " too large");
    Placed& p = place[i];
    p.loaded = true;
    p.seg = s.sh_flags & SHF_EXECINSTR ? Segment::Code : s.sh_flags & SHF_WRITE || s.sh_type == SHT_NOBITS ? Segment::Data : Segment::Const;
    uint64_t& end = seg_size[size_t(p.seg)];
    p.offset = align_up(end, align);
    end = p.offset + s.sh_size;
    if (end > kMaxImageBytes) bad("sections too large");
    if (p.seg == Segment::Code) code_bytes += s.sh_size;
  }
  if (!symtab) bad("no symbol table");
  const Elf64_Shdr& st = sh[symtab];
  if (st.sh_entsize != sizeof(Elf64_Sym) || st.sh_size % sizeof(Elf64_Sym)) bad("bad symbol table entry size");
  if (st.sh_link >= nsec || sh[st.sh_link].sh_type != SHT_STRTAB) bad("symbol table without a string table");
  const size_t nsym = st.sh_size / sizeof(Elf64_Sym);
  if (nsym == 0 || nsym > (1u << 20)) bad("symbol count " + std::to_string(nsym));
  std::vector<Elf64_Sym> syms(nsym);
  std::memcpy(syms.data(), bytes + st.sh_offset, nsym * sizeof(Elf64_Sym));

  // The relocation sections that apply to loaded sections; GOT slots and call stubs they need.
  std::vector<size_t> relas;
  std::map<uint32_t, uint64_t> got, stubs;  // symbol index -> offset in the const / code segment
  for (size_t i = 0; i < nsec; i++) {
    const Elf64_Shdr& r = sh[i];
    if (r.sh_type == SHT_REL) bad("REL relocations are not x86-64's");
    if (r.sh_type != SHT_RELA) continue;
    if (r.sh_info >= nsec) bad("relocation section " + std::to_string(i) + " names no section");
    if (!place[r.sh_info].loaded) continue;  // e.g. .rela.eh_frame
    if (r.sh_link != symtab) bad("relocation section " + std::to_string(i) + " uses another symbol table");
    if (r.sh_entsize != sizeof(Elf64_Rela) || r.sh_size % sizeof(Elf64_Rela)) bad("bad relocation entry size");
    if (sh[r.sh_info].sh_type == SHT_NOBITS) bad("relocations against a NOBITS section");
    relas.push_back(i);
    for (uint64_t k = 0; k < r.sh_size / sizeof(Elf64_Rela); k++) {
      Elf64_Rela rel;
      std::memcpy(&rel, bytes + r.sh_offset + k * sizeof rel, sizeof rel);
      const uint32_t type = ELF64_R_TYPE(rel.r_info), sym = ELF64_R_SYM(rel.r_info);
      if (sym >= nsym) bad("relocation against symbol " + std::to_string(sym) + " of " + std::to_string(nsym));
      if (type == R_X86_64_GOTPCREL || type == R_X86_64_GOTPCRELX || type == R_X86_64_REX_GOTPCRELX) {
        got.emplace(sym, 0);
      } else if (type == R_X86_64_PLT32 && syms[sym].st_shndx == SHN_UNDEF) {
        stubs.emplace(sym, 0);
      }
    }
  }
  for (auto& [sym, off] : stubs) {
    off = align_up(seg_size[size_t(Segment::Code)], kStubBytes);
    seg_size[size_t(Segment::Code)] = off + kStubBytes;
  }
  for (auto& [sym, off] : got) {
    off = align_up(seg_size[size_t(Segment::Const)], 8);
    seg_size[size_t(Segment::Const)] = off + 8;
  }

  // One mapping, each segment on its own pages.
  const uint64_t page = uint64_t(sysconf(_SC_PAGESIZE));
  uint64_t seg_start[kSegments];
  uint64_t total = 0;
  for (size_t g = 0; g < kSegments; g++) {
    seg_start[g] = total;
    total += align_up(seg_size[g], page);
  }
  if (total == 0) bad("nothing to load");
  if (total > kMaxImageBytes) bad("sections too large");
  void* const mem = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) bad(std::string("cannot map ") + std::to_string(total) + " bytes: " + std::strerror(errno));
  LoadedObject out;
  out.base_ = mem;
  out.size_ = total;
  out.code_bytes_ = code_bytes;
  uint8_t* const base = static_cast<uint8_t*>(mem);
  std::memset(base + seg_start[size_t(Segment::Code)], 0xcc, kCodePadBytes);
  for (size_t i = 0; i < nsec; i++) {
    if (!place[i].loaded) continue;
    place[i].offset += seg_start[size_t(place[i].seg)];
    if (sh[i].sh_type == SHT_PROGBITS) std::memcpy(base + place[i].offset, bytes + sh[i].sh_offset, sh[i].sh_size);
  }

  // Symbol addresses (0 with `defined` false: a symbol of a section that is not loaded).
  std::vector<uint64_t> addr(nsym, 0);
  std::vector<bool> defined(nsym, false);
  for (size_t k = 1; k < nsym; k++) {
    const Elf64_Sym& s = syms[k];
    const std::string_view name = str(st.sh_link, s.st_name);
    if (s.st_shndx == SHN_UNDEF) {
      for (const Symbol& e : externals)
        if (name == e.name) {
          addr[k] = reinterpret_cast<uint64_t>(e.addr);
          defined[k] = true;
        }
      continue;  // refused below if a relocation needs it (compilers declare _GLOBAL_OFFSET_TABLE_ unused)
    }
    if (s.st_shndx == SHN_ABS) {
      addr[k] = s.st_value;
      defined[k] = true;
      continue;
    }
    if (s.st_shndx == SHN_COMMON) bad("common symbol '" + printable(name) + "'");
    if (s.st_shndx >= nsec) bad("symbol '" + printable(name) + "' in section " + std::to_string(s.st_shndx));
    if (!place[s.st_shndx].loaded) continue;
    if (s.st_value > sh[s.st_shndx].sh_size) bad("symbol '" + printable(name) + "' beyond its section");
    addr[k] = reinterpret_cast<uint64_t>(base + place[s.st_shndx].offset + s.st_value);
    defined[k] = true;
    const unsigned bind = ELF64_ST_BIND(s.st_info);
    if ((bind == STB_GLOBAL || bind == STB_WEAK) && !name.empty()) out.globals_.emplace_back(std::string(name), addr[k]);
  }
  for (auto& [sym, off] : stubs) {
    off += seg_start[size_t(Segment::Code)];
    static const uint8_t jmp[6] = {0xff, 0x25, 0, 0, 0, 0};  // jmp *0(%rip)
    std::memcpy(base + off, jmp, sizeof jmp);
    std::memcpy(base + off + sizeof jmp, &addr[sym], 8);
  }
  for (auto& [sym, off] : got) {
    off += seg_start[size_t(Segment::Const)];
    std::memcpy(base + off, &addr[sym], 8);
  }

  for (const size_t i : relas) {
    const Elf64_Shdr& r = sh[i];
    const Elf64_Shdr& target = sh[r.sh_info];
    uint8_t* const tbase = base + place[r.sh_info].offset;
    for (uint64_t k = 0; k < r.sh_size / sizeof(Elf64_Rela); k++) {
      Elf64_Rela rel;
      std::memcpy(&rel, bytes + r.sh_offset + k * sizeof rel, sizeof rel);
      const uint32_t type = ELF64_R_TYPE(rel.r_info), sym = ELF64_R_SYM(rel.r_info);
      if (type == R_X86_64_NONE) continue;
      const uint64_t width = type == R_X86_64_64 || type == R_X86_64_PC64 ? 8 : 4;
      if (!within(rel.r_offset, width, target.sh_size)) bad("relocation offset out of its section");
      if (sym != 0 && !defined[sym]) {
        if (syms[sym].st_shndx == SHN_UNDEF)
          bad("undefined symbol '" + printable(str(st.sh_link, syms[sym].st_name)) + "' (not one of the engine's)");
        bad("relocation against a symbol of a section that is not loaded");
      }
      uint8_t* const where = tbase + rel.r_offset;
      const uint64_t P = reinterpret_cast<uint64_t>(where);
      const uint64_t S = addr[sym];
      const int64_t A = rel.r_addend;
      uint64_t v = 0;
      switch (type) {
        case R_X86_64_64:
        case R_X86_64_PC64: {
          v = type == R_X86_64_64 ? S + uint64_t(A) : S + uint64_t(A) - P;
          std::memcpy(where, &v, 8);
          continue;
        }
        case R_X86_64_PC32: v = S + uint64_t(A) - P; break;
        case R_X86_64_PLT32: {
          const auto it = stubs.find(sym);
          v = (it != stubs.end() ? reinterpret_cast<uint64_t>(base + it->second) : S) + uint64_t(A) - P;
          break;
        }
        case R_X86_64_GOTPCREL:
        case R_X86_64_GOTPCRELX:
        case R_X86_64_REX_GOTPCRELX:
          v = reinterpret_cast<uint64_t>(base + got.at(sym)) + uint64_t(A) - P;
          break;
        case R_X86_64_32:
          v = S + uint64_t(A);
          if (v > UINT32_MAX) bad("R_X86_64_32 value out of range");
          break;
        case R_X86_64_32S: v = S + uint64_t(A); break;
        default: bad("unsupported relocation type " + std::to_string(type));
      }
      if (type != R_X86_64_32 && int64_t(v) != int64_t(int32_t(uint32_t(v))))
        bad("relocation type " + std::to_string(type) + " out of 32-bit range");
      const uint32_t v32 = uint32_t(v);
      std::memcpy(where, &v32, 4);
    }
  }

  // Write, then execute: the code and constant pages lose write permission before anything runs.
  const int prot[kSegments] = {PROT_READ | PROT_EXEC, PROT_READ, PROT_READ | PROT_WRITE};
  for (size_t g = 0; g < kSegments; g++) {
    const uint64_t len = align_up(seg_size[g], page);
    if (len && prot[g] != (PROT_READ | PROT_WRITE) && mprotect(base + seg_start[g], len, prot[g]) != 0)
      bad(std::string("mprotect: ") + std::strerror(errno));
  }
  return out;
}

}  // namespace bf::native

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <vector>

#include "kernel/app/elf.h"
#include "kernel/lib/layout.h"

using namespace bf::kern;

namespace {

// A minimal valid static executable: one R+X segment at 0x400000 holding the headers and code.
std::vector<uint8_t> make_elf(uint16_t type = kEtExec, uint64_t vaddr = 0x400000) {
  std::vector<uint8_t> f(4096 + 64, 0);
  Elf64Ehdr eh{};
  std::memcpy(eh.ident, "\x7f" "ELF\x02\x01\x01", 7);
  eh.type = type;
  eh.machine = kEmX86_64;
  eh.version = 1;
  eh.entry = vaddr + 0x1000;
  eh.phoff = 64;
  eh.ehsize = 64;
  eh.phentsize = 56;
  eh.phnum = 2;
  std::memcpy(f.data(), &eh, sizeof eh);
  Elf64Phdr text{kPtLoad, kPfR | kPfX, 0, vaddr, vaddr, 0x1040, 0x1040, 0x1000};
  Elf64Phdr data{kPtLoad, kPfR | kPfW, 0x1040, vaddr + 0x2040, vaddr + 0x2040, 0, 0x100, 0x1000};
  std::memcpy(f.data() + 64, &text, 56);
  std::memcpy(f.data() + 120, &data, 56);
  return f;
}

Elf64Phdr& phdr(std::vector<uint8_t>& f, int i) { return *reinterpret_cast<Elf64Phdr*>(f.data() + 64 + 56 * i); }
Elf64Ehdr& ehdr(std::vector<uint8_t>& f) { return *reinterpret_cast<Elf64Ehdr*>(f.data()); }

const char* parse(const std::vector<uint8_t>& f, ElfImage* img) {
  return elf_parse(f.data(), f.size(), kUserMin, kMmapBase, img);
}

}  // namespace

TEST(ElfLoader, AcceptsStaticExecutable) {
  auto f = make_elf();
  ElfImage img;
  ASSERT_EQ(parse(f, &img), nullptr);
  EXPECT_FALSE(img.pie);
  EXPECT_EQ(img.nsegs, 2u);
  EXPECT_EQ(img.entry, 0x401000u);
  EXPECT_EQ(img.phdr_vaddr, 0x400040u);  // found inside the first segment (no PT_PHDR)
  EXPECT_EQ(img.min_vaddr, 0x400000u);
  EXPECT_EQ(img.max_vaddr, 0x403000u);
}

TEST(ElfLoader, AcceptsStaticPieAtZero) {
  auto f = make_elf(kEtDyn, 0);
  ElfImage img;
  ASSERT_EQ(parse(f, &img), nullptr);
  EXPECT_TRUE(img.pie);
}

TEST(ElfLoader, RejectsMalformedFiles) {
  ElfImage img;
  std::vector<uint8_t> tiny(10, 0);
  EXPECT_STREQ(parse(tiny, &img), "file too small for an ELF header");
  auto f = make_elf();
  f[1] = 'X';
  EXPECT_STREQ(parse(f, &img), "not an ELF file");
  f = make_elf();
  f[4] = 1;
  EXPECT_STREQ(parse(f, &img), "not a 64-bit ELF");
  f = make_elf();
  ehdr(f).machine = 3;
  EXPECT_STREQ(parse(f, &img), "not an x86-64 executable");
  f = make_elf();
  ehdr(f).type = 1;
  EXPECT_STREQ(parse(f, &img), "not an executable (ET_EXEC or ET_DYN)");
  f = make_elf();
  ehdr(f).phnum = 1000;
  EXPECT_STREQ(parse(f, &img), "bad program header count");
  f = make_elf();
  ehdr(f).phoff = f.size() - 10;
  EXPECT_STREQ(parse(f, &img), "program headers outside the file");
  f = make_elf();
  phdr(f, 0).filesz = 1ull << 40;
  phdr(f, 0).memsz = 1ull << 40;
  EXPECT_STREQ(parse(f, &img), "segment data outside the file");
  f = make_elf();
  phdr(f, 1).filesz = 0x200;
  EXPECT_STREQ(parse(f, &img), "segment file size exceeds memory size");
  f = make_elf();
  phdr(f, 0).vaddr = ~0ull - 0x100;
  EXPECT_STREQ(parse(f, &img), "segment address overflow");
  f = make_elf();
  phdr(f, 1).vaddr = 0x402041;
  EXPECT_STREQ(parse(f, &img), "segment not page-congruent with its file offset");
  f = make_elf();
  phdr(f, 1).type = kPtInterp;
  EXPECT_STREQ(parse(f, &img), "dynamically linked (PT_INTERP): BareFlow runs static executables");
  f = make_elf();
  ehdr(f).entry = 0x402050;  // inside the data segment
  EXPECT_STREQ(parse(f, &img), "entry point outside executable segments");
  f = make_elf();
  phdr(f, 1).vaddr = 0x400040;  // overlaps the text segment
  EXPECT_STREQ(parse(f, &img), "overlapping segments");
  f = make_elf(kEtExec, 0x1000);  // inside the kernel's first 2 MiB
  ehdr(f).entry = 0x2000;
  EXPECT_STREQ(parse(f, &img), "segments outside the user address range");
}

TEST(ElfLoader, GarbageNeverCrashes) {
  // Deterministic pseudo-random mutations of a valid file: parse must return, never crash.
  auto base = make_elf();
  uint64_t x = 88172645463325252ull;
  for (int iter = 0; iter < 20000; ++iter) {
    auto f = base;
    for (int k = 0; k < 4; ++k) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      f[x % 176] = uint8_t(x >> 32);
    }
    ElfImage img;
    const char* err = parse(f, &img);
    if (!err) {
      EXPECT_GE(img.nsegs, 1u);
      EXPECT_LE(img.nsegs, kMaxSegments);
    }
  }
}

TEST(ElfLoader, AcceptsTheRealGuestProgram) {
  std::ifstream in(BF_GUEST_TEST_PATH, std::ios::binary);
  ASSERT_TRUE(in.good()) << BF_GUEST_TEST_PATH;
  std::vector<uint8_t> f((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ElfImage img;
  ASSERT_EQ(parse(f, &img), nullptr);
  EXPECT_GE(img.nsegs, 2u);
}

TEST(ElfLoader, SymbolizesTheRealGuestProgram) {
  std::ifstream in(BF_GUEST_TEST_PATH, std::ios::binary);
  std::vector<uint8_t> f((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ElfSymbols syms;
  ASSERT_TRUE(elf_symbols(f.data(), f.size(), &syms));
  EXPECT_GT(syms.count, 100u);
  // Find main's address through the table itself, then ask for an address inside it.
  uint64_t main_addr = 0;
  for (uint64_t i = 0; i < syms.count && !main_addr; ++i) {
    const uint8_t* s = syms.syms + i * 24;
    uint32_t name;
    std::memcpy(&name, s, 4);
    if (std::string(syms.strtab + name) == "main") std::memcpy(&main_addr, s + 8, 8);
  }
  ASSERT_NE(main_addr, 0u);
  uint64_t off = 0;
  const char* n = elf_symbolize(syms, main_addr + 3, &off);
  ASSERT_NE(n, nullptr);
  EXPECT_STREQ(n, "main");
  EXPECT_EQ(off, 3u);
  EXPECT_EQ(elf_symbolize(syms, 0x10, &off), nullptr);
}

TEST(ElfLoader, NoSymbolsInGarbage) {
  auto f = make_elf();
  ElfSymbols syms;
  EXPECT_FALSE(elf_symbols(f.data(), f.size(), &syms));
  ehdr(f).shentsize = 64;
  ehdr(f).shnum = 3;
  ehdr(f).shoff = f.size() - 10;  // outside the file
  EXPECT_FALSE(elf_symbols(f.data(), f.size(), &syms));
}

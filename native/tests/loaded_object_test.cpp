// The LLVM-free loader on real compiler output (native/tests/sample_object.c built three ways) and
// on damaged objects: what loads computes what the compiler meant; what is damaged is refused with
// a line naming the problem.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "engine/error.h"
#include "native/loaded_object.h"

namespace {

using bf::native::LoadedObject;
using bf::native::Symbol;

int g_external = 0;  // the object's `extern int bf_sample_external`

std::vector<Symbol> externals() {
  std::vector<Symbol> v(bf::native::runtime_symbols().begin(), bf::native::runtime_symbols().end());
  v.push_back({"bf_sample_external", &g_external});
  return v;
}

std::vector<uint8_t> read_object(const std::string& variant) {
  const std::string path = std::string(BF_SAMPLE_OBJECTS) + "/sample_" + variant + ".o";
  std::ifstream f(path, std::ios::binary);
  EXPECT_TRUE(f) << path;
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

// What sample_object.c's bf_sample_dot computes, compiled here.
float expected_dot(const float* x, int n) {
  static const float w[8] = {1.5f, -2.25f, 3.0f, 0.5f, -1.0f, 2.0f, 0.25f, 4.0f};
  float s = 0;
  for (int i = 0; i < n; i++) s += x[i] * w[i & 7];
  return std::sqrt(std::fabs(s)) + std::exp(-s * s);
}

// The permissions /proc/self/maps shows for the page holding p ("r-xp", ...).
std::string permissions_of(const void* p) {
  std::ifstream maps("/proc/self/maps");
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  std::string line;
  while (std::getline(maps, line)) {
    unsigned long lo = 0, hi = 0;
    char perms[8] = {};
    if (std::sscanf(line.c_str(), "%lx-%lx %7s", &lo, &hi, perms) == 3 && a >= lo && a < hi) return perms;
  }
  return "";
}

std::string load_error(const std::vector<uint8_t>& bytes, const std::vector<Symbol>& ext) {
  try {
    LoadedObject::load(bytes, ext);
  } catch (const bf::Error& e) {
    return e.message;
  }
  return "";
}

class Variants : public ::testing::TestWithParam<const char*> {};

TEST_P(Variants, RunsWhatTheCompilerMeant) {
  const std::vector<uint8_t> bytes = read_object(GetParam());
  ASSERT_FALSE(bytes.empty());
  if (std::string(GetParam()) == "nopie") {
    // Absolute 32-bit addresses (R_X86_64_32S) cannot reach pages mapped above 2 GiB: refused.
    const std::string why = load_error(bytes, externals());
    if (!why.empty()) {
      EXPECT_NE(why.find("out of"), std::string::npos) << why;
      return;
    }
  }
  LoadedObject o = LoadedObject::load(bytes, externals());
  auto dot = reinterpret_cast<float (*)(const float*, int)>(o.find("bf_sample_dot"));
  auto fill = reinterpret_cast<void (*)(unsigned char*, int)>(o.find("bf_sample_fill"));
  auto calls = reinterpret_cast<int (*)()>(o.find("bf_sample_calls"));
  ASSERT_TRUE(dot && fill && calls);
  EXPECT_EQ(o.find("kWeights"), nullptr);  // local symbols are not exported
  EXPECT_EQ(o.find("bf_nothing"), nullptr);
  EXPECT_GT(o.code_bytes(), 0u);
  float x[13];
  for (int i = 0; i < 13; i++) x[i] = 0.1f * float(i) - 0.4f;
  for (int n : {0, 1, 7, 13}) {
    const float got = dot(x, n), want = expected_dot(x, n);
    EXPECT_NEAR(got, want, 1e-5f * (1 + std::fabs(want))) << "n=" << n;
  }
  unsigned char buf[37];
  std::memset(buf, 0, sizeof buf);
  fill(buf, 33);
  EXPECT_EQ(buf[0], 0x5a);
  EXPECT_EQ(buf[32], 0x5a);
  EXPECT_EQ(buf[33], 0);
  g_external = 100;
  EXPECT_EQ(calls(), 104);  // four dot() calls, through the object's own writable .bss
  // Code pages are executable and never writable.
  EXPECT_EQ(permissions_of(reinterpret_cast<const void*>(dot)), "r-xp");
}

INSTANTIATE_TEST_SUITE_P(Sample, Variants, ::testing::Values("pie", "large", "nopie"));

TEST(LoadedObject, RefusesAnUnknownExternal) {
  const std::vector<uint8_t> bytes = read_object("pie");
  const std::string why = load_error(bytes, std::vector<Symbol>(bf::native::runtime_symbols().begin(),
                                                                bf::native::runtime_symbols().end()));
  EXPECT_EQ(why, "native object: undefined symbol 'bf_sample_external' (not one of the engine's)");
}

TEST(LoadedObject, RefusesNonObjects) {
  EXPECT_EQ(load_error({}, externals()), "native object: shorter than an ELF header");
  std::vector<uint8_t> bytes = read_object("pie");
  bytes[0] = 'X';
  EXPECT_EQ(load_error(bytes, externals()), "native object: not an ELF file");
  bytes = read_object("pie");
  bytes[16] = 2;  // e_type = ET_EXEC
  EXPECT_EQ(load_error(bytes, externals()), "native object: not a relocatable object (e_type 2)");
  bytes = read_object("pie");
  bytes[18] = 0xb7;  // e_machine = EM_AARCH64
  EXPECT_EQ(load_error(bytes, externals()), "native object: not x86-64 code (e_machine 183)");
}

// Every prefix of a real object is refused (or, if it happens to hold everything, loads): never a
// crash or a read past the end (ASan checks the latter in the sanitizer build).
TEST(LoadedObject, EveryTruncationIsRefused) {
  const std::vector<uint8_t> bytes = read_object("pie");
  size_t refused = 0;
  for (size_t n = 0; n < bytes.size(); n++) {
    const std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + long(n));
    if (!load_error(cut, externals()).empty()) refused++;
  }
  // The section headers sit at the end of what GCC writes: every proper prefix lacks them.
  EXPECT_EQ(refused, bytes.size());
}

// Each byte of the headers and tables flipped in turn: refused with a message or loaded; a load
// that succeeds must still give non-writable code pages.
TEST(LoadedObject, FlippedBytesAreRefusedOrHarmless) {
  const std::vector<uint8_t> bytes = read_object("pie");
  size_t refused = 0;
  for (size_t i = 0; i < bytes.size(); i++) {
    std::vector<uint8_t> b = bytes;
    b[i] ^= 0xff;
    try {
      LoadedObject o = LoadedObject::load(b, externals());
      EXPECT_GT(o.mapped_bytes(), 0u);
    } catch (const bf::Error& e) {
      EXPECT_EQ(e.message.rfind("native object: ", 0), 0u) << e.message;
      refused++;
    }
  }
  EXPECT_GT(refused, 0u);
}

}  // namespace

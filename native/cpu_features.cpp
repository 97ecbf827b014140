#include "native/cpu_features.h"

#include <cpuid.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "engine/error.h"

namespace bf::native {

namespace {

struct NamedBit {
  uint8_t word, bit;
  const char* name;
};

// The instruction-set features x86-64 codegen can use, by their Linux /proc/cpuinfo names, and the
// register state the OS must enable for them. Only these are compared: the other CPUID bits
// (hypervisor, mitigations, APIC, ...) say nothing about which instructions run.
const NamedBit kNamed[] = {
    {0, 0, "sse3"},        {0, 1, "pclmulqdq"},   {0, 9, "ssse3"},       {0, 12, "fma"},
    {0, 13, "cx16"},       {0, 19, "sse4_1"},     {0, 20, "sse4_2"},     {0, 22, "movbe"},
    {0, 23, "popcnt"},     {0, 25, "aes"},        {0, 26, "xsave"},      {0, 27, "osxsave"},
    {0, 28, "avx"},        {0, 29, "f16c"},       {0, 30, "rdrand"},     {1, 8, "cx8"},
    {1, 15, "cmov"},       {1, 25, "sse"},        {1, 26, "sse2"},       {2, 3, "bmi1"},
    {2, 5, "avx2"},        {2, 8, "bmi2"},        {2, 16, "avx512f"},    {2, 17, "avx512dq"},
    {2, 18, "rdseed"},     {2, 19, "adx"},        {2, 21, "avx512ifma"}, {2, 28, "avx512cd"},
    {2, 29, "sha_ni"},     {2, 30, "avx512bw"},   {2, 31, "avx512vl"},   {3, 1, "avx512vbmi"},
    {3, 6, "avx512vbmi2"}, {3, 8, "gfni"},        {3, 9, "vaes"},        {3, 10, "vpclmulqdq"},
    {3, 11, "avx512vnni"}, {3, 12, "avx512bitalg"}, {3, 14, "avx512vpopcntdq"}, {4, 23, "avx512fp16"},
    {5, 4, "avxvnni"},     {5, 5, "avx512bf16"},  {6, 5, "abm"},         {6, 6, "sse4a"},
    {6, 8, "3dnowprefetch"}, {6, 11, "xop"},      {6, 16, "fma4"},       {6, 21, "tbm"},
    {8, 1, "xcr0.sse"},    {8, 2, "xcr0.avx"},    {8, 5, "xcr0.opmask"}, {8, 6, "xcr0.zmm_hi256"},
    {8, 7, "xcr0.hi16_zmm"},
};

}  // namespace

CpuFeatures host_cpu_features() {
  CpuFeatures f{};
  unsigned a, b, c, d;
  const unsigned max = __get_cpuid_max(0, nullptr);
  if (max >= 1 && __get_cpuid_count(1, 0, &a, &b, &c, &d)) {
    f[0] = c;
    f[1] = d;
  }
  if (max >= 7 && __get_cpuid_count(7, 0, &a, &b, &c, &d)) {
    f[2] = b;
    f[3] = c;
    f[4] = d;
    if (a >= 1 && __get_cpuid_count(7, 1, &a, &b, &c, &d)) f[5] = a;
  }
  if (__get_cpuid_max(0x80000000, nullptr) >= 0x80000001 && __get_cpuid_count(0x80000001, 0, &a, &b, &c, &d)) {
    f[6] = c;
    f[7] = d;
  }
  if (f[0] & (1u << 27)) {  // OSXSAVE: XGETBV is allowed
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    f[8] = lo;
  }
  if (const char* mask = std::getenv("BAREFLOW_TEST_CPU_MASK"); mask && *mask) {
    const std::string_view m = mask;
    for (size_t i = 0; i < m.size();) {
      const size_t end = std::min(m.find(',', i), m.size());
      const std::string_view name = m.substr(i, end - i);
      for (const NamedBit& n : kNamed)
        if (name == n.name) f[n.word] &= ~(1u << n.bit);
      i = end + 1;
    }
  }
  return f;
}

std::string missing_features(const CpuFeatures& needed, const CpuFeatures& have) {
  std::string out;
  for (const NamedBit& n : kNamed)
    if ((needed[n.word] >> n.bit & 1) && !(have[n.word] >> n.bit & 1)) out += (out.empty() ? "" : ", ") + std::string(n.name);
  return out;
}

std::string format_cpu_features(const CpuFeatures& f) {
  std::string s;
  for (size_t w = 0; w < kCpuWords; w++) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "%s%08x", w ? ":" : "", f[w]);
    s += buf;
  }
  return s;
}

CpuFeatures parse_cpu_features(const std::string& s) {
  CpuFeatures f{};
  if (s.size() != kCpuWords * 9 - 1) fail("cpu features", "'" + printable(s) + "' is not " + std::to_string(kCpuWords) + " hex words");
  for (size_t w = 0; w < kCpuWords; w++) {
    uint32_t v = 0;
    for (size_t k = 0; k < 8; k++) {
      const char c = s[w * 9 + k];
      const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
      if (d < 0) fail("cpu features", "'" + printable(s) + "' is not hex");
      v = v << 4 | uint32_t(d);
    }
    if (w + 1 < kCpuWords && s[w * 9 + 8] != ':') fail("cpu features", "'" + printable(s) + "' is not ':'-separated");
    f[w] = v;
  }
  return f;
}

Isa best_isa_of(const CpuFeatures& f) {
  // Words: 0 leaf 1 ECX, 2 leaf 7 EBX, 3 leaf 7 ECX, 5 leaf 7.1 EAX, 8 XCR0 (kernels/dispatch.cpp's
  // detect()).
  const auto bit = [&](size_t w, int b) { return (f[w] >> b) & 1u; };
  const bool ymm = (f[8] & 0x6) == 0x6, zmm = (f[8] & 0xe6) == 0xe6;
  const bool avx2 = bit(0, 27) && bit(0, 28) && ymm && bit(2, 5) && bit(0, 12) && bit(0, 29);
  if (avx2 && zmm && bit(2, 16) && bit(2, 17) && bit(2, 30) && bit(2, 31) && bit(3, 11)) return Isa::Avx512;
  if (avx2 && bit(5, 4)) return Isa::AvxVnni;
  return avx2 ? Isa::Avx2 : Isa::Scalar;
}

}  // namespace bf::native

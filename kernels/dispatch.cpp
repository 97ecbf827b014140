#include "kernels/dispatch.h"

#include <cpuid.h>

#include <iterator>

namespace bf {
namespace avx2 {
const Kernels& kernels();
float stream_sum(const float* p, size_t n);
}  // namespace avx2
namespace avx512 {
const Kernels& kernels();
float stream_sum(const float* p, size_t n);
}  // namespace avx512
namespace avxvnni {
const Kernels& kernels();
float stream_sum(const float* p, size_t n);
}  // namespace avxvnni

namespace {

// The appliance templates are built with one SIMD family (BF_ONLY_ISA: 0 none, 1 AVX2, 2
// AVX-512, 3 AVX-VNNI): the others are then never referenced, and the link drops their kernels. Indexed by Isa.
#ifdef BF_ONLY_ISA
constexpr bool kLinked[] = {true, BF_ONLY_ISA == 1, BF_ONLY_ISA == 2, BF_ONLY_ISA == 3};
#else
constexpr bool kLinked[] = {true, true, true, true};
#endif

struct CpuFeatures {
  bool avx2 = false, avx512 = false, avxvnni = false;
};

// XCR0: which register states the OS saves on context switch. Read only when OSXSAVE is set.
uint64_t xcr0() {
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return uint64_t(hi) << 32 | lo;
}

CpuFeatures detect() {
  CpuFeatures f;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28), f16c = c & (1u << 29);
  if (!osxsave || !avx) return f;
  const uint64_t xcr = xcr0();
  const bool ymm_state = (xcr & 0x6) == 0x6;     // SSE + AVX
  const bool zmm_state = (xcr & 0xe6) == 0xe6;   // + opmask, ZMM_Hi256, Hi16_ZMM
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return f;
  const unsigned leaf7_subleaves = a;
  const bool avx2 = b & (1u << 5);
  const bool avx512f = b & (1u << 16), dq = b & (1u << 17), bw = b & (1u << 30), vl = b & (1u << 31);
  const bool vnni = c & (1u << 11);
  f.avx2 = ymm_state && avx2 && fma && f16c;
  f.avx512 = f.avx2 && zmm_state && avx512f && dq && bw && vl && vnni;
  if (leaf7_subleaves >= 1 && __get_cpuid_count(7, 1, &a, &b, &c, &d)) f.avxvnni = f.avx2 && (a & (1u << 4));
  return f;
}

const CpuFeatures& features() {
  static const CpuFeatures f = detect();
  return f;
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return "scalar";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
    case Isa::AvxVnni: return "avxvnni";
  }
  return "?";
}

bool isa_supported(Isa isa) {
  if (size_t(isa) >= std::size(kLinked) || !kLinked[size_t(isa)]) return false;
  switch (isa) {
    case Isa::Scalar: return true;
    case Isa::Avx2: return features().avx2;
    case Isa::Avx512: return features().avx512;
    case Isa::AvxVnni: return features().avxvnni;
  }
  return false;
}

Isa best_isa() {
  if (isa_supported(Isa::Avx512)) return Isa::Avx512;
  if (isa_supported(Isa::AvxVnni)) return Isa::AvxVnni;
  if (isa_supported(Isa::Avx2)) return Isa::Avx2;
  return Isa::Scalar;
}

const Kernels& kernels_for(Isa isa) {
  if constexpr (kLinked[size_t(Isa::Avx2)])
    if (isa == Isa::Avx2) return avx2::kernels();
  if constexpr (kLinked[size_t(Isa::Avx512)])
    if (isa == Isa::Avx512) return avx512::kernels();
  if constexpr (kLinked[size_t(Isa::AvxVnni)])
    if (isa == Isa::AvxVnni) return avxvnni::kernels();
  return reference_kernels();
}

float stream_sum(Isa isa, const float* p, size_t n) {
  if constexpr (kLinked[size_t(Isa::Avx2)])
    if (isa == Isa::Avx2) return avx2::stream_sum(p, n);
  if constexpr (kLinked[size_t(Isa::Avx512)])
    if (isa == Isa::Avx512) return avx512::stream_sum(p, n);
  if constexpr (kLinked[size_t(Isa::AvxVnni)])
    if (isa == Isa::AvxVnni) return avxvnni::stream_sum(p, n);
  float s = 0.0f;
  for (size_t i = 0; i < n; i++) s += p[i];
  return s;
}

}  // namespace bf

// AVX-512 (F/BW/VL/DQ) + VNNI kernels: the shared 256-bit code with vpdpbusd int8 dot products,
// and 512-bit loads for the bandwidth probe. Called only after a CPUID + XCR0 check.
#define BF_SIMD_NS avx512
#define BF_SIMD_NAME "avx512"
#define BF_VNNI 1
#include "kernels/simd_impl.h"

namespace bf::avx512 {

float stream_sum(const float* p, size_t n) {
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    a0 = _mm512_add_ps(a0, _mm512_loadu_ps(p + i));
    a1 = _mm512_add_ps(a1, _mm512_loadu_ps(p + i + 16));
    a2 = _mm512_add_ps(a2, _mm512_loadu_ps(p + i + 32));
    a3 = _mm512_add_ps(a3, _mm512_loadu_ps(p + i + 48));
  }
  const __m512 a = _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3));
  alignas(64) float lane[16];
  _mm512_store_ps(lane, a);
  float s = 0.0f;
  for (float l : lane) s += l;
  for (; i < n; i++) s += p[i];
  return s;
}

}  // namespace bf::avx512

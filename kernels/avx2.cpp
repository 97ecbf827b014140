// AVX2 + FMA + F16C kernels (built with -mavx2 -mfma -mf16c; called only after a CPUID check).
#define BF_SIMD_NS avx2
#define BF_SIMD_NAME "avx2"
#define BF_VNNI 0
#include "kernels/simd_impl.h"

namespace bf::avx2 {

// Four independent accumulators keep the loads, not the add latency, the limit.
float stream_sum(const float* p, size_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    a0 = _mm256_add_ps(a0, _mm256_loadu_ps(p + i));
    a1 = _mm256_add_ps(a1, _mm256_loadu_ps(p + i + 8));
    a2 = _mm256_add_ps(a2, _mm256_loadu_ps(p + i + 16));
    a3 = _mm256_add_ps(a3, _mm256_loadu_ps(p + i + 24));
  }
  alignas(32) float lane[8];
  _mm256_store_ps(lane, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
  float s = 0.0f;
  for (float l : lane) s += l;
  for (; i < n; i++) s += p[i];
  return s;
}

}  // namespace bf::avx2

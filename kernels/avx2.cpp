// AVX2 + FMA + F16C kernels (built with -mavx2 -mfma -mf16c; called only after a CPUID check).
#define BF_SIMD_NS avx2
#define BF_SIMD_NAME "avx2"
#define BF_VNNI 0
#define BF_STREAM_SUM_256 1
#include "kernels/simd_impl.h"

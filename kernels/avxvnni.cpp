// AVX2 + AVX-VNNI kernels: the shared 256-bit code with vpdpbusd in its VEX encoding, for CPUs
// that have AVX-VNNI without AVX-512 (and are chosen after AVX-512 on those with both). Called only
// after a CPUID + XCR0 check.
#define BF_SIMD_NS avxvnni
#define BF_SIMD_NAME "avxvnni"
#define BF_VNNI 1
#define BF_VNNI_VEX 1
#define BF_STREAM_SUM_256 1
#include "kernels/simd_impl.h"

// The JIT's kernel source. Compiled only by clang-19 to LLVM bitcode at build time (jit/CMakeLists.txt)
// and embedded in bareflow; never by the host compiler.
//
// It holds the scalar reference (the correctness oracle) and the hand-written SIMD kernels the AOT
// build runs (kernels/simd_impl.h, once with pmaddubsw for AVX2 hosts, once with VNNI for
// AVX-512 hosts and once with AVX-VNNI's VEX vpdpbusd for hosts that have it without AVX-512), plus entry points whose matrix type and shape come from constants that the JIT
// defines per call site (jit/compiler.cpp). Once those are constants, LLVM folds the type dispatch,
// the group size, the block counts and every loop bound: the same kernels the AOT build ships, each
// specialized to one site's shape and this CPU. Both paths are bit-identical to the reference (the
// SIMD one by construction, see simd_impl.h), so the JIT never changes an output.
#include "kernels/reference_impl.h"

// simd_impl.h's headers first, so that the target pragmas below apply to its kernels only.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#define BF_SIMD_NS avx2
#define BF_SIMD_NAME "avx2"
#define BF_VNNI 0
#include "kernels/simd_impl.h"
#undef BF_SIMD_NS
#undef BF_SIMD_NAME
#undef BF_VNNI
#pragma clang attribute pop

#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni"))), \
                             apply_to = function)
#define BF_SIMD_NS avx512
#define BF_SIMD_NAME "avx512"
#define BF_VNNI 1
#include "kernels/simd_impl.h"
#undef BF_SIMD_NS
#undef BF_SIMD_NAME
#undef BF_VNNI
#undef BF_VNNI_VEX
#pragma clang attribute pop

#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,avxvnni"))), apply_to = function)
#define BF_SIMD_NS avxvnni
#define BF_SIMD_NAME "avxvnni"
#define BF_VNNI 1
#define BF_VNNI_VEX 1
#include "kernels/simd_impl.h"
#pragma clang attribute pop

extern "C" {

// Layer 0's matrix of the site (for a fused group: its first matrix; the others are
// bf_spec_rows2/3 rows of the same type, group and width).
extern const bf::DType bf_spec_type;
extern const int32_t bf_spec_group;
extern const int64_t bf_spec_rows;
extern const int64_t bf_spec_cols;
extern const int64_t bf_spec_rows2;
extern const int64_t bf_spec_rows3;

}  // extern "C"

namespace {

using Kernel = void (*)(float*, const bf::Matrix&, const float*, const bf::QuantizedVector*, int64_t, int64_t);

// W with the site's constants in place of its fields: only the data pointers stay run-time values.
inline bf::Matrix constant_shape(const bf::Matrix& W, int64_t rows) {
  bf::Matrix m;
  m.type = bf_spec_type;
  m.data = W.data;
  m.scales = W.scales;
  m.group = bf_spec_group;
  m.rows = rows;
  m.cols = bf_spec_cols;
  return m;
}

// xq with the site's constants in place of its length and group (in *q), or null.
inline const bf::QuantizedVector* constant_shape(const bf::QuantizedVector* xq, bf::QuantizedVector* q) {
  if (!xq) return nullptr;
  *q = {xq->q, xq->s, bf_spec_cols, bf_spec_group, xq->sums};
  return q;
}

// Same contract as Kernels::matvec.
template <Kernel K>
inline void specialized(float* out, const bf::Matrix& W, const float* x, const bf::QuantizedVector* xq, int64_t r0,
                        int64_t r1) {
  bf::QuantizedVector q;
  K(out, constant_shape(W, bf_spec_rows), x, constant_shape(xq, &q), r0, r1);
}

// FusedFn for Qkv (engine/transformer.h): the row range walks wq, wk, wv stacked, one pass.
template <Kernel K>
inline void qkv(float* const* out, const bf::Matrix* const* W, const float* x, const bf::QuantizedVector* xq,
                int64_t r0, int64_t r1) {
  bf::QuantizedVector q;
  const bf::QuantizedVector* xc = constant_shape(xq, &q);
  const int64_t rows[3] = {bf_spec_rows, bf_spec_rows2, bf_spec_rows3};
  int64_t base = 0;
  for (int i = 0; i < 3; i++) {
    const int64_t lo = std::max(r0, base) - base, hi = std::min(r1, base + rows[i]) - base;
    if (lo < hi) K(out[i] + lo, constant_shape(*W[i], rows[i]), x, xc, lo, hi);
    base += rows[i];
  }
}

// FusedFn for W13: rows of w1 and w3 a slice at a time (the slice's two results stay in L1), then
// the swiglu kernel on them; hb2 is never written.
template <Kernel K>
inline void w13(float* const* out, const bf::Matrix* const* W, const float* x, const bf::QuantizedVector* xq,
                int64_t r0, int64_t r1) {
  // Long enough that the kernels' block-ahead prefetch runs ahead of nearly every block.
  constexpr int64_t kSlice = 256;
  bf::QuantizedVector q;
  const bf::QuantizedVector* xc = constant_shape(xq, &q);
  const bf::Matrix w1 = constant_shape(*W[0], bf_spec_rows), w3 = constant_shape(*W[1], bf_spec_rows);
  float gate[kSlice], up[kSlice];
  for (int64_t r = r0; r < r1; r += kSlice) {
    const int64_t e = std::min(r1, r + kSlice);
    K(gate, w1, x, xc, r, e);
    K(up, w3, x, xc, r, e);
    bf::ref_swiglu(gate, up, int(e - r));
    std::memcpy(out[0] + r, gate, size_t(e - r) * sizeof(float));
  }
}

}  // namespace

// One entry per kernel family and kind; the JIT keeps the one the host runs (the scalar reference
// for the interpreter and for hosts without AVX2) and deletes the others before optimizing.
#define BF_JIT_ENTRIES(suffix, target, kernel)                                                                   \
  target void bf_jit_matvec_##suffix(float* out, const bf::Matrix& W, const float* x,                             \
                                     const bf::QuantizedVector* xq, int64_t r0, int64_t r1) {                    \
    specialized<kernel>(out, W, x, xq, r0, r1);                                                                  \
  }                                                                                                              \
  target void bf_jit_qkv_##suffix(float* const* out, const bf::Matrix* const* W, const float* x,                  \
                                  const bf::QuantizedVector* xq, int64_t r0, int64_t r1) {                       \
    qkv<kernel>(out, W, x, xq, r0, r1);                                                                          \
  }                                                                                                              \
  target void bf_jit_w13_##suffix(float* const* out, const bf::Matrix* const* W, const float* x,                  \
                                  const bf::QuantizedVector* xq, int64_t r0, int64_t r1) {                       \
    w13<kernel>(out, W, x, xq, r0, r1);                                                                          \
  }

extern "C" {
BF_JIT_ENTRIES(reference, , bf::ref_matvec)
BF_JIT_ENTRIES(avx2, __attribute__((target("avx2,fma,f16c"))), bf::avx2::matvec)
BF_JIT_ENTRIES(avx512, __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni"))),
               bf::avx512::matvec)
BF_JIT_ENTRIES(avxvnni, __attribute__((target("avx2,fma,f16c,avxvnni"))), bf::avxvnni::matvec)
}  // extern "C"

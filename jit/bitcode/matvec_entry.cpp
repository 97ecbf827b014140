// The JIT's kernel source. Compiled only by clang-19 to LLVM bitcode at build time (jit/CMakeLists.txt)
// and embedded in bareflow; never by the host compiler.
//
// It is the scalar reference itself (the correctness oracle), plus one entry point whose matrix
// type and shape come from constants that the JIT defines per call site (jit/compiler.cpp). Once
// those are constants, LLVM's optimizer folds the type dispatch, the group size and the loop
// bounds: one generic source, a specialized kernel per site.
//
// Two kernels are written for the JIT: F32, and Q8_0 with a quantized activation. The reference's
// row-at-a-time loops vectorize to one horizontal reduction per block and row (Q8_0: 0.45x the
// AVX2 AOT kernel) or not at all (F32, whose in-order sum forbids it: 0.15x); these put 8 rows in
// the 8 lanes like the AOT kernels and get their shape constants from the JIT. They need AVX2 (the
// JIT sets bf_spec_vector only on such hosts); per lane the float operations are the reference's,
// in its order, and integer dots are exact in any order, so they are bit-identical to it.
#include "kernels/reference.cpp"

namespace bfjit {

typedef int8_t i8x32 __attribute__((vector_size(32)));
typedef int16_t i16x16 __attribute__((vector_size(32)));
typedef int32_t i32x8 __attribute__((vector_size(32)));
typedef float f32x8 __attribute__((vector_size(32)));
typedef _Float16 f16x8 __attribute__((vector_size(16)));

// 8 partial sums of w[k] * x[k] as the AVX2 AOT kernel computes them: |w| * (x with w's sign) in
// vpmaddubsw (int16 pair sums, exact for |x| <= 127), then vpmaddwd by ones.
__attribute__((target("avx2"))) inline i32x8 dot32(const int8_t* w, const int8_t* x) {
  i8x32 wv, xv;
  __builtin_memcpy(&wv, w, 32);
  __builtin_memcpy(&xv, x, 32);
  const i8x32 aw = __builtin_elementwise_abs(wv);
  const i8x32 sx = (i8x32)__builtin_ia32_psignb256((i8x32)xv, (i8x32)wv);
  const i16x16 pairs16 = (i16x16)__builtin_ia32_pmaddubsw256((i8x32)aw, (i8x32)sx);
  const i16x16 ones = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
  return (i32x8)__builtin_ia32_pmaddwd256(pairs16, ones);
}

// Pairwise sums of a's lanes then b's.
__attribute__((target("avx2"))) inline i32x8 pairs(i32x8 a, i32x8 b) {
  return __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14) + __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15);
}

// Lane k = sum of the lanes of v[k].
__attribute__((target("avx2"))) inline i32x8 reduce8(const i32x8* v) {
  const i32x8 a0 = pairs(v[0], v[1]), a1 = pairs(v[2], v[3]), a2 = pairs(v[4], v[5]), a3 = pairs(v[6], v[7]);
  const i32x8 b0 = pairs(a0, a1), b1 = pairs(a2, a3);  // [v0 v0 v1 v1 v2 v2 v3 v3], [v4 .. v7]
  return pairs(b0, b1);                                // [v0 v1 v2 v3 v4 v5 v6 v7], each whole
}

// out[0..8) = reference dot_quantized of the 8 rows starting at block row b. With `prefetch`, the
// next 8 rows (they follow in memory) are fetched while these are multiplied.
__attribute__((target("avx2,f16c"))) void q8_0_rows8(float* out, const bf::BlockQ8_0* b, int64_t groups,
                                                    const bf::QuantizedVector& xq, bool prefetch) {
  f32x8 acc = {0, 0, 0, 0, 0, 0, 0, 0};
  constexpr int64_t kNextPerGroup = 8 * sizeof(bf::BlockQ8_0);
  for (int64_t g = 0; g < groups; g++) {
    if (prefetch) {
      const char* next = reinterpret_cast<const char*>(b + 8 * groups) + g * kNextPerGroup;
#pragma clang loop unroll(full)
      for (int64_t k = 0; k < kNextPerGroup; k += 64) __builtin_prefetch(next + k);
    }
    i32x8 p[8];
    uint16_t bits[8];
#pragma clang loop unroll(full)
    for (int i = 0; i < 8; i++) {
      const bf::BlockQ8_0& blk = b[i * groups + g];
      p[i] = dot32(blk.qs, xq.q + g * bf::kBlock);
      bits[i] = blk.d;
    }
    f16x8 h;
    __builtin_memcpy(&h, bits, sizeof h);
    // One vcvtph2ps: the value of fp16_to_f32 for every input but signaling NaNs (made quiet),
    // which verification would catch.
    const f32x8 d = __builtin_convertvector(h, f32x8);
    const f32x8 isum = __builtin_convertvector(reduce8(p), f32x8);
    const float s = xq.s[g];
    acc = acc + isum * d * s;
  }
  __builtin_memcpy(out, &acc, sizeof acc);
}

// In place: r[k] = column k of the 8x8 tile whose rows are r[0..8).
__attribute__((target("avx2"))) inline void transpose8(f32x8* r) {
  f32x8 t[8], s[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = __builtin_shufflevector(r[i], r[i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
    t[i + 1] = __builtin_shufflevector(r[i], r[i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
  }
  for (int i = 0; i < 8; i += 4) {
    s[i] = __builtin_shufflevector(t[i], t[i + 2], 0, 1, 8, 9, 4, 5, 12, 13);
    s[i + 1] = __builtin_shufflevector(t[i], t[i + 2], 2, 3, 10, 11, 6, 7, 14, 15);
    s[i + 2] = __builtin_shufflevector(t[i + 1], t[i + 3], 0, 1, 8, 9, 4, 5, 12, 13);
    s[i + 3] = __builtin_shufflevector(t[i + 1], t[i + 3], 2, 3, 10, 11, 6, 7, 14, 15);
  }
  for (int i = 0; i < 4; i++) {
    r[i] = __builtin_shufflevector(s[i], s[i + 4], 0, 1, 2, 3, 8, 9, 10, 11);
    r[i + 4] = __builtin_shufflevector(s[i], s[i + 4], 4, 5, 6, 7, 12, 13, 14, 15);
  }
}

// out[0..8) = the reference's f32 dot of the 8 rows starting at w (rows `cols` floats apart):
// lane i adds w[i][j] * x[j] for j = 0, 1, ... in order, as the reference's row loop does. With
// `prefetch`, the same columns of the next 8 rows are fetched a tile ahead of use.
__attribute__((target("avx2"))) void f32_rows8(float* out, const float* w, int64_t cols, const float* x,
                                              bool prefetch) {
  f32x8 acc = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t j = 0;
  for (; j + 8 <= cols; j += 8) {
    if (prefetch && (j & 15) == 0) {
#pragma clang loop unroll(full)
      for (int i = 8; i < 16; i++) __builtin_prefetch(w + i * cols + j);
    }
    f32x8 r[8];
#pragma clang loop unroll(full)
    for (int i = 0; i < 8; i++) __builtin_memcpy(&r[i], w + i * cols + j, sizeof(f32x8));
    transpose8(r);
#pragma clang loop unroll(full)
    for (int k = 0; k < 8; k++) acc = acc + r[k] * x[j + k];
  }
  for (; j < cols; j++) {
    const f32x8 col = {w[j], w[cols + j], w[2 * cols + j], w[3 * cols + j],
                       w[4 * cols + j], w[5 * cols + j], w[6 * cols + j], w[7 * cols + j]};
    acc = acc + col * x[j];
  }
  __builtin_memcpy(out, &acc, sizeof acc);
}

}  // namespace bfjit

extern "C" {

extern const bf::DType bf_spec_type;
extern const int32_t bf_spec_group;
extern const int64_t bf_spec_rows;
extern const int64_t bf_spec_cols;
extern const int32_t bf_spec_vector;  // 1: compiled tier on an AVX2 host: q8_0_rows8 may run

// Same contract as Kernels::matvec; only the data pointers of W and xq are read at run time.
void bf_jit_matvec(float* out, const bf::Matrix& W, const float* x, const bf::QuantizedVector* xq, int64_t r0,
                   int64_t r1) {
  bf::Matrix m;
  m.type = bf_spec_type;
  m.data = W.data;
  m.scales = W.scales;
  m.group = bf_spec_group;
  m.rows = bf_spec_rows;
  m.cols = bf_spec_cols;
  bf::QuantizedVector q;
  if (xq) q = {xq->q, xq->s, bf_spec_cols, bf_spec_group};
  if (bf_spec_vector && xq && m.type == bf::DType::Q8_0 && bf::matrix_uses_quantized_activation(m)) {
    const int64_t groups = m.cols / bf::kBlock;
    for (; r0 + 8 <= r1; r0 += 8, out += 8)
      bfjit::q8_0_rows8(out, static_cast<const bf::BlockQ8_0*>(m.data) + r0 * groups, groups, q, r0 + 16 <= r1);
  } else if (bf_spec_vector && m.type == bf::DType::F32) {
    for (; r0 + 8 <= r1; r0 += 8, out += 8)
      bfjit::f32_rows8(out, static_cast<const float*>(m.data) + r0 * m.cols, m.cols, x, r0 + 16 <= r1);
  }
  bf::ref_matvec(out, m, x, xq ? &q : nullptr, r0, r1);  // the rest, or everything
}

}  // extern "C"

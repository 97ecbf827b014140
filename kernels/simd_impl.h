// The SIMD kernels, written once with 256-bit intrinsics and compiled per ISA: kernels/avx2.cpp
// (BF_VNNI 0: int8 dots with vpmaddubsw) and kernels/avx512.cpp (BF_VNNI 1: vpdpbusd). On Zen 4
// 512-bit operations issue as two 256-bit halves, so the AVX-512 level's gain is VNNI, not width.
//
// Bit-exactness with kernels/reference.cpp is the design rule:
//  - f32/f16 matvec puts 8 ROWS in the 8 lanes (8x8 register transposes), so each lane adds its
//    row's products in the reference's column order, with separate multiply and add (no FMA;
//    these files build with -ffp-contract=off);
//  - quantized matvec computes each block's integer dot exactly, reduces 8 rows into 8 lanes, and
//    scales and accumulates in the reference's float order;
//  - anything else (rows not on block boundaries, groups not a multiple of 32, row remainders
//    below 8) goes to the reference itself.
// Expects BF_SIMD_NS (namespace), BF_SIMD_NAME (table name) and BF_VNNI from the including file;
// BF_VNNI_VEX 1 (kernels/avxvnni.cpp) takes vpdpbusd's AVX-VNNI encoding; BF_STREAM_SUM_256 1 adds
// the 256-bit bandwidth probe (avx512.cpp has its own, with 512-bit loads).
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "kernels/kernels.h"

#ifndef BF_VNNI_VEX
#define BF_VNNI_VEX 0
#endif

namespace bf::BF_SIMD_NS {
namespace {

// r[c] <- column c of the 8x8 matrix whose rows are r[0..8).
inline void transpose8(__m256 r[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
  r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
  r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
  r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
  r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
  r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
  r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
  r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

template <bool F16>
inline __m256 load8(const void* base, int64_t e) {
  if constexpr (F16) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(base) + e)));
  } else {
    return _mm256_loadu_ps(static_cast<const float*>(base) + e);
  }
}

template <bool F16>
inline float load1(const void* base, int64_t e) {
  if constexpr (F16) {
    return fp16_to_f32(static_cast<const uint16_t*>(base)[e]);
  } else {
    return static_cast<const float*>(base)[e];
  }
}

// Rows in lanes means reading 8 rows side by side, which the hardware prefetchers track badly (one
// stream per row). But a block of consecutive rows is one contiguous range: while a block is
// computed, a block ahead (`next`, `next_bytes`) is prefetched sequentially into L2, a slice per
// step, so DRAM sees one sequential stream per thread.
struct Prefetcher {
  const char* p;
  const char* end;
  int64_t per_step;  // bytes per step, whole cache lines

  Prefetcher(const uint8_t* next, int64_t bytes, int64_t steps)
      : p(reinterpret_cast<const char*>(next)), end(next ? p + bytes : p),
        per_step((bytes + 64 * steps - 1) / (64 * steps) * 64) {}
  void step() {
    for (int64_t b = 0; b < per_step && p < end; b += 64, p += 64) _mm_prefetch(p, _MM_HINT_T1);
  }
};

// 8 rows from rb, times NT activations: out[t*ldo + i] = dot(row rb+i, x_t); NT > 1 reuses each
// transposed tile. Only 8 rows side by side: rows whose length is a multiple of 4 KiB all map to
// one L1 set (8 ways), and 16 rows measured ~2x slower there. Each step consumes 16 columns, a
// whole 64-byte line per f32 row, so no line is fetched twice.
// Columns [j0, j1) only: the partial sums (8 per activation) come in and go out through `carry`,
// unchanged in order, and only the call with j1 == cols finishes the rows and writes `out`.
template <bool F16, int NT>
void float_rows(float* out, int64_t ldo, const Matrix& W, const float* x, int64_t ldx, int64_t rb, int64_t j0,
                int64_t j1, float* carry, const uint8_t* next, int64_t next_bytes) {
  const int64_t C = W.cols, cv = j0 + ((j1 - j0) & ~int64_t(15));
  __m256 acc[NT];
  for (int t = 0; t < NT; t++) acc[t] = j0 == 0 ? _mm256_setzero_ps() : _mm256_load_ps(carry + 8 * t);
  const auto tile = [&](int64_t j) {
    __m256 w[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) w[i] = load8<F16>(W.data, (rb + i) * C + j);
    transpose8(w);
#pragma GCC unroll 4  // a full unroll of the token loop spills more on AVX2 (measured slower)
    for (int t = 0; t < NT; t++) {
      const float* xt = x + t * ldx + j;
#pragma GCC unroll 8
      for (int c = 0; c < 8; c++) acc[t] = _mm256_add_ps(acc[t], _mm256_mul_ps(w[c], _mm256_broadcast_ss(xt + c)));
    }
  };
  Prefetcher pf(next, next_bytes, std::max<int64_t>(1, (cv - j0) / 16));
  for (int64_t j = j0; j < cv; j += 16) {
    pf.step();
    tile(j);
    tile(j + 8);
  }
  if (j1 < C) {
    for (int t = 0; t < NT; t++) _mm256_store_ps(carry + 8 * t, acc[t]);
    return;
  }
  const int64_t done = C & ~int64_t(7);
  if (cv < done) tile(cv);
  for (int t = 0; t < NT; t++) {
    alignas(32) float lane[8];
    _mm256_store_ps(lane, acc[t]);
    const float* xt = x + t * ldx;
    for (int i = 0; i < 8; i++) {
      const int64_t row = (rb + i) * C;
      for (int64_t j = done; j < C; j++) lane[i] += load1<F16>(W.data, row + j) * xt[j];
      out[t * ldo + i] = lane[i];
    }
  }
}

// The fp16 scales at d + offsets[i] (one per row) as 8 floats: a 32-bit gather (the scale and the
// block's first two quants), the low halves packed together, converted.
inline __m256 block_scales(const uint16_t* d, __m256i offsets) {
  const __m256i w = _mm256_i32gather_epi32(reinterpret_cast<const int*>(d), offsets, 1);
  const __m256i lo16 = _mm256_shuffle_epi8(
      w, _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1, 0, 1, 4, 5, 8, 9, 12, 13, -1,
                          -1, -1, -1, -1, -1, -1, -1));
  return _mm256_cvtph_ps(_mm256_castsi256_si128(_mm256_permute4x64_epi64(lo16, 0x08)));
}

// Lane i of the result = sum of the 8 lanes of v[i] (integer: any order is exact). Unpacks and
// adds, one uop each, rather than vphaddd (several uops on AMD cores).
inline __m256i reduce8(const __m256i v[8]) {
  __m256i s[4];
  for (int k = 0; k < 4; k++)  // lanes of rows 2k, 2k+1 interleaved, pairs summed
    s[k] = _mm256_add_epi32(_mm256_unpacklo_epi32(v[2 * k], v[2 * k + 1]), _mm256_unpackhi_epi32(v[2 * k], v[2 * k + 1]));
  // [r0 r1 r2 r3 | r0 r1 r2 r3] and [r4 .. r7 | r4 .. r7], each half a partial sum
  const __m256i a = _mm256_add_epi32(_mm256_unpacklo_epi64(s[0], s[1]), _mm256_unpackhi_epi64(s[0], s[1]));
  const __m256i b = _mm256_add_epi32(_mm256_unpacklo_epi64(s[2], s[3]), _mm256_unpackhi_epi64(s[2], s[3]));
  return _mm256_add_epi32(_mm256_permute2x128_si256(a, b, 0x20), _mm256_permute2x128_si256(a, b, 0x31));
}

#if BF_VNNI
// acc + the 8 int32 sums of 4 products u[k] * s[k] (u unsigned, s signed bytes): vpdpbusd, in its
// EVEX form (AVX-512 VL + VNNI) or its VEX form (AVX-VNNI: the same instruction on CPUs without
// AVX-512, 16 vector registers).
inline __m256i dpbusd(__m256i acc, __m256i u, __m256i s) {
#if BF_VNNI_VEX
  return _mm256_dpbusd_avx_epi32(acc, u, s);
#else
  return _mm256_dpbusd_epi32(acc, u, s);
#endif
}
#endif

// 8 int32 partial sums of u[k] * s[k] (u unsigned, s signed bytes). Exact: with u <= 128 and
// |s| <= 127 the int16 pair sums of vpmaddubsw cannot saturate.
inline __m256i udot(__m256i u, __m256i s) {
#if BF_VNNI
  return dpbusd(_mm256_setzero_si256(), u, s);
#else
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
#endif
}

// Signed dot of 32 int8 weights with 32 int8 activations: |w| * (x with w's sign).
inline __m256i dot_q8(__m256i w, __m256i x) { return udot(_mm256_abs_epi8(w), _mm256_sign_epi8(x, w)); }

// udot(u1, s1) + udot(u2, s2), exact: vpmaddubsw pair sums of nibbles are at most 15*127*2, so
// two of them still fit int16.
inline __m256i udot2(__m256i u1, __m256i s1, __m256i u2, __m256i s2) {
#if BF_VNNI
  return dpbusd(dpbusd(_mm256_setzero_si256(), u1, s1), u2, s2);
#else
  return _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(u1, s1), _mm256_maddubs_epi16(u2, s2)),
                           _mm256_set1_epi16(1));
#endif
}

// Every lane = the sum of v's 8 lanes.
inline __m256i hsum_broadcast(__m256i v) {
  v = _mm256_add_epi32(v, _mm256_permute2x128_si256(v, v, 1));
  v = _mm256_add_epi32(v, _mm256_shuffle_epi32(v, 0x4e));
  return _mm256_add_epi32(v, _mm256_shuffle_epi32(v, 0xb1));
}

// 8 rows from rb against NT quantized activations xq[0..NT): out[t * ldo + i] = reference
// dot_quantized(row rb+i, xq[t]). A block's weights (Q8_0: their magnitudes; Q4_0: the unpacked
// nibbles) and the rows' scales are prepared once per block for all NT tokens (batched prefill);
// per token and lane the integer dot is exact and the float steps are the reference's.
// x8 (Q4_0, NT == 1, optional): 8 x the sum of each block's quantized activations, computed once
// per call instead of once per 8-row block (else it is computed here).
template <DType T, int NT>
void quant_rows(float* out, int64_t ldo, const Matrix& W, const QuantizedVector* xq, int64_t rb,
                const uint8_t* next, int64_t next_bytes, const int32_t* x8 = nullptr) {
  const int32_t G = matrix_group(W);
  const int64_t groups = W.cols / G;
  __m256 acc[NT];
  for (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_ps();
  // Byte offsets of the 8 rows' blocks, for gathering their fp16 scales.
  const int32_t rb_bytes = int32_t(groups * (T == DType::Q4_0 ? sizeof(BlockQ4_0) : sizeof(BlockQ8_0)));
  const __m256i row_bytes = _mm256_mullo_epi32(_mm256_set1_epi32(rb_bytes), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  Prefetcher pf(next, next_bytes, groups);
  for (int64_t g = 0; g < groups; g++) {
    pf.step();
    __m256i p[8];
    __m256 d;
    __m256i isum[NT];  // lane i: the integer dot of row rb+i's block g with token t
    if constexpr (T == DType::Q8_0) {
      const BlockQ8_0* b = static_cast<const BlockQ8_0*>(W.data) + rb * groups + g;
      const auto row = [&](int i) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[i * groups].qs)); };
      d = block_scales(&b->d, row_bytes);
      if constexpr (NT == 1) {  // decode: holding 8 magnitudes as well would spill (measured 1.2x slower)
        const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq[0].q + g * G));
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++) p[i] = dot_q8(row(i), xv);
        isum[0] = reduce8(p);
      } else {
#if BF_VNNI
        // x + 128 (unsigned) against w (signed): one vpdpbusd per token and row, no saturation;
        // 128 * sum(w), once per block for all tokens, is taken off the exact dot.
        const __m256i bias = _mm256_set1_epi8(char(0x80));
        __m256i w[8];
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++) {
          w[i] = row(i);
          p[i] = dpbusd(_mm256_setzero_si256(), bias, w[i]);
        }
        const __m256i offset = reduce8(p);
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++) {
          const __m256i xu = _mm256_xor_si256(
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq[t].q + g * G)), bias);
#pragma GCC unroll 8
          for (int i = 0; i < 8; i++) p[i] = dpbusd(_mm256_setzero_si256(), xu, w[i]);
          isum[t] = _mm256_sub_epi32(reduce8(p), offset);
        }
#else
        __m256i mag[8];  // |w| once; each token's x takes w's signs (dot_q8)
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++) mag[i] = _mm256_abs_epi8(row(i));
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++) {
          const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq[t].q + g * G));
#pragma GCC unroll 8
          for (int i = 0; i < 8; i++) p[i] = udot(mag[i], _mm256_sign_epi8(xv, row(i)));
          isum[t] = reduce8(p);
        }
#endif
      }
    } else if constexpr (T == DType::Q4_0) {
      const BlockQ4_0* b = static_cast<const BlockQ4_0*>(W.data) + rb * groups + g;
      const __m256i m = _mm256_set1_epi8(0x0f);
      // Rows 2k and 2k+1 in the two 128-bit lanes: low nibbles (elements 0..15), high (16..31).
      __m256i lo[4], hi[4];
#pragma GCC unroll 4
      for (int k = 0; k < 4; k++) {
        const __m256i q = _mm256_inserti128_si256(
            _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b[2 * k * groups].qs))),
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(b[(2 * k + 1) * groups].qs)), 1);
        lo[k] = _mm256_and_si256(q, m);
        hi[k] = _mm256_and_si256(_mm256_srli_epi16(q, 4), m);
      }
      d = block_scales(&b->d, row_bytes);
#pragma GCC unroll 4
      for (int t = 0; t < NT; t++) {
        const __m128i* x = reinterpret_cast<const __m128i*>(xq[t].q + g * G);
        const __m256i xlo = _mm256_broadcastsi128_si256(_mm_loadu_si128(x));
        const __m256i xhi = _mm256_broadcastsi128_si256(_mm_loadu_si128(x + 1));
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) p[k] = udot2(lo[k], xlo, hi[k], xhi);
        // [r0 r2 r4 r6 | r1 r3 r5 r7] -> rows in order
        const __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(p[0], p[1]), _mm256_hadd_epi32(p[2], p[3]));
        // sum (n - 8) x = sum n x - 8 sum x: nibbles are unsigned, so vpmaddubsw takes them as is.
        const __m256i offset =
            x8 ? _mm256_set1_epi32(x8[g])
               : _mm256_slli_epi32(hsum_broadcast(udot2(_mm256_set1_epi8(1), xlo, _mm256_set1_epi8(1), xhi)), 2);
        isum[t] = _mm256_sub_epi32(_mm256_permutevar8x32_epi32(h, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)), offset);
      }
    } else {  // Q8_G, G % 32 == 0: llama2.c's group sizes are large; nothing is shared across tokens
      const int8_t* w = static_cast<const int8_t*>(W.data) + (rb * groups + g) * G;
      const int64_t stride = groups * G;  // one row
      for (int t = 0; t < NT; t++) {
        for (int i = 0; i < 8; i++) p[i] = _mm256_setzero_si256();
        for (int k = 0; k < G; k += 32) {
          const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq[t].q + g * G + k));
#pragma GCC unroll 8
          for (int i = 0; i < 8; i++)
            p[i] = _mm256_add_epi32(
                p[i], dot_q8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + i * stride + k)), xv));
        }
        isum[t] = reduce8(p);
      }
      const float* s = W.scales + rb * groups + g;
      d = _mm256_setr_ps(s[0], s[groups], s[2 * groups], s[3 * groups], s[4 * groups], s[5 * groups],
                         s[6 * groups], s[7 * groups]);
    }
    // reference: sum += float(isum) * wscale * xq.s[g]
    for (int t = 0; t < NT; t++)
      acc[t] = _mm256_add_ps(acc[t], _mm256_mul_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(isum[t]), d),
                                                   _mm256_set1_ps(xq[t].s[g])));
  }
  for (int t = 0; t < NT; t++) _mm256_storeu_ps(out + t * ldo, acc[t]);
}

// Repacked rows 8R..8R+7 (BlockQ8_0x8 / BlockQ4_0x8) against NT quantized activations: out[t * ldo
// + i] = reference dot_quantized(row 8R+i, xq[t]). Each 32-byte load holds 4 weights of every row,
// dotted with the activation's 4 matching bytes broadcast to all lanes, so each lane accumulates
// its own row: no reduction, and the 8 scales are one load. The weights are unsigned (Q8_0: w +
// 128; Q4_0: nibbles, value n - 8), so the exact dot is the unsigned one minus c * sum(x) (c = 128
// or 8), sum(x) from xq[t].sums. The k loop is outermost so that each weight load serves NT tokens.
template <DType T, int NT>
void packed_rows(float* out, int64_t ldo, const Matrix& W, const QuantizedVector* xq, int64_t R,
                 const uint8_t* next, int64_t next_bytes) {
  const int64_t groups = W.cols / kBlock;
  constexpr bool kQ8 = T == DType::Q8_0x8;
  using Block = std::conditional_t<kQ8, BlockQ8_0x8, BlockQ4_0x8>;
  const Block* b = static_cast<const Block*>(W.data) + R * groups;
  __m256 acc[NT];
  for (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_ps();
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  Prefetcher pf(next, next_bytes, groups);
  for (int64_t g = 0; g < groups; g++) {
    pf.step();
    const uint8_t* qs = b[g].qs;
    const auto load = [&](int k) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 32 * k)); };
    // x's bytes 4k..4k+3 of token t in every lane
    const auto xk = [&](int t, int k) {
      return _mm256_set1_epi32(reinterpret_cast<const int32_t*>(xq[t].q + g * kBlock)[k]);
    };
    __m256i isum[NT];
    for (int t = 0; t < NT; t++) isum[t] = _mm256_setzero_si256();
#if BF_VNNI
    if constexpr (kQ8) {
#pragma GCC unroll 8
      for (int k = 0; k < 8; k++) {
        const __m256i w = load(k);
#pragma GCC unroll 16
        for (int t = 0; t < NT; t++) isum[t] = dpbusd(isum[t], w, xk(t, k));
      }
    } else {
#pragma GCC unroll 4
      for (int k = 0; k < 4; k++) {
        const __m256i q = load(k);
        const __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
#pragma GCC unroll 16
        for (int t = 0; t < NT; t++)
          isum[t] = dpbusd(dpbusd(isum[t], lo, xk(t, k)), hi, xk(t, k + 4));
      }
    }
#else
    if constexpr (kQ8) {
      // vpmaddubsw would saturate on w + 128: back to signed w, then |w| against x with w's sign.
      const __m256i bias = _mm256_set1_epi8(char(0x80)), one = _mm256_set1_epi16(1);
#pragma GCC unroll 8
      for (int k = 0; k < 8; k++) {
        const __m256i w = _mm256_xor_si256(load(k), bias), mag = _mm256_abs_epi8(w);
#pragma GCC unroll 16
        for (int t = 0; t < NT; t++)
          isum[t] = _mm256_add_epi32(
              isum[t], _mm256_madd_epi16(_mm256_maddubs_epi16(mag, _mm256_sign_epi8(xk(t, k), w)), one));
      }
    } else {
      // Nibble pair sums are at most 2 * 15 * 127: eight of them still fit int16.
      __m256i s16[NT];
      for (int t = 0; t < NT; t++) s16[t] = _mm256_setzero_si256();
#pragma GCC unroll 4
      for (int k = 0; k < 4; k++) {
        const __m256i q = load(k);
        const __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
#pragma GCC unroll 16
        for (int t = 0; t < NT; t++)
          s16[t] = _mm256_add_epi16(_mm256_add_epi16(s16[t], _mm256_maddubs_epi16(lo, xk(t, k))),
                                    _mm256_maddubs_epi16(hi, xk(t, k + 4)));
      }
      for (int t = 0; t < NT; t++) isum[t] = _mm256_madd_epi16(s16[t], _mm256_set1_epi16(1));
    }
#endif
    const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b[g].d)));
#pragma GCC unroll 16
    for (int t = 0; t < NT; t++) {
#if BF_VNNI
      constexpr int kShift = kQ8 ? 7 : 3;  // c = 128 or 8
#else
      constexpr int kShift = kQ8 ? -1 : 3;  // AVX2 Q8_0 dotted signed w: nothing to take off
#endif
      if constexpr (kShift >= 0) isum[t] = _mm256_sub_epi32(isum[t], _mm256_set1_epi32(xq[t].sums[g] << kShift));
      // reference: sum += float(isum) * wscale * xq.s[g]
      acc[t] = _mm256_add_ps(acc[t], _mm256_mul_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(isum[t]), d),
                                                   _mm256_set1_ps(xq[t].s[g])));
    }
  }
  for (int t = 0; t < NT; t++) _mm256_storeu_ps(out + t * ldo, acc[t]);
}

// AVX-512 only: two repacked row groups (16 rows, R and R + 1) side by side in one 512-bit
// register, group R in lanes 0-7. Each lane does what packed_rows' lane does, in the same order
// (the same bits); each broadcast activation word, scale load and float step serves 16 rows instead
// of 8. Zen 4 issues a 512-bit operation as two 256-bit halves, so the gain is half the
// instructions per multiply-add (prefill is front-end bound), not wider ALUs: prefill measured
// 1.25-1.55x packed_rows on Zen 4. Prefill only (matmul); decode keeps packed_rows (matvec).
#define BF_PACKED16 (BF_VNNI && !BF_VNNI_VEX)
#if BF_PACKED16
template <DType T, int NT>
void packed_rows16(float* out, int64_t ldo, const Matrix& W, const QuantizedVector* xq, int64_t R,
                   const uint8_t* next, int64_t next_bytes) {
  const int64_t groups = W.cols / kBlock;
  constexpr bool kQ8 = T == DType::Q8_0x8;
  using Block = std::conditional_t<kQ8, BlockQ8_0x8, BlockQ4_0x8>;
  const Block* b0 = static_cast<const Block*>(W.data) + R * groups;
  const Block* b1 = b0 + groups;
  __m512 acc[NT];
  for (int t = 0; t < NT; t++) acc[t] = _mm512_setzero_ps();
  const __m512i m4 = _mm512_set1_epi8(0x0f);
  Prefetcher pf(next, next_bytes, groups);
  for (int64_t g = 0; g < groups; g++) {
    pf.step();
    const uint8_t* q0 = b0[g].qs;
    const uint8_t* q1 = b1[g].qs;
    const auto load = [&](int k) {
      return _mm512_inserti64x4(
          _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q0 + 32 * k))),
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q1 + 32 * k)), 1);
    };
    const auto xk = [&](int t, int k) {
      return _mm512_set1_epi32(reinterpret_cast<const int32_t*>(xq[t].q + g * kBlock)[k]);
    };
    __m512i isum[NT];
    for (int t = 0; t < NT; t++) isum[t] = _mm512_setzero_si512();
    if constexpr (kQ8) {
#pragma GCC unroll 8
      for (int k = 0; k < 8; k++) {
        const __m512i w = load(k);
#pragma GCC unroll 16
        for (int t = 0; t < NT; t++) isum[t] = _mm512_dpbusd_epi32(isum[t], w, xk(t, k));
      }
    } else {
#pragma GCC unroll 4
      for (int k = 0; k < 4; k++) {
        const __m512i q = load(k);
        const __m512i lo = _mm512_and_si512(q, m4), hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
#pragma GCC unroll 16
        for (int t = 0; t < NT; t++)
          isum[t] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(isum[t], lo, xk(t, k)), hi, xk(t, k + 4));
      }
    }
    const __m512 d = _mm512_cvtph_ps(
        _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b0[g].d))),
                                _mm_loadu_si128(reinterpret_cast<const __m128i*>(b1[g].d)), 1));
#pragma GCC unroll 16
    for (int t = 0; t < NT; t++) {
      constexpr int kShift = kQ8 ? 7 : 3;  // as packed_rows
      isum[t] = _mm512_sub_epi32(isum[t], _mm512_set1_epi32(xq[t].sums[g] << kShift));
      acc[t] = _mm512_add_ps(acc[t], _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(isum[t]), d),
                                                   _mm512_set1_ps(xq[t].s[g])));
    }
  }
  for (int t = 0; t < NT; t++) _mm512_storeu_ps(out + t * ldo, acc[t]);
}
#endif

bool packed(const Matrix& W) { return W.type == DType::Q8_0x8 || W.type == DType::Q4_0x8; }

// rows.template operator()<T>() with T W's repacked type.
template <class Rows>
void with_packed_type(DType type, const Rows& rows) {
  if (type == DType::Q8_0x8) rows.template operator()<DType::Q8_0x8>();
  else rows.template operator()<DType::Q4_0x8>();
}

bool simd_quantized(const Matrix& W) {
  return W.type == DType::Q8_0 || W.type == DType::Q4_0 || (W.type == DType::Q8_G && W.group % 32 == 0);
}

// Byte offset of row r in W's stream (rows start on block boundaries wherever this is used).
int64_t row_offset(const Matrix& W, int64_t r) {
  switch (W.type) {
    case DType::F32: return r * W.cols * 4;
    case DType::F16: return r * W.cols * 2;
    case DType::Q8_0: return r * (W.cols / kBlock) * int64_t(sizeof(BlockQ8_0));
    case DType::Q4_0:
    case DType::Q4_0x8: return r * (W.cols / kBlock) * int64_t(sizeof(BlockQ4_0));  // r % 8 == 0 for x8
    case DType::Q8_0x8: return r * (W.cols / kBlock) * int64_t(sizeof(BlockQ8_0));
    default: return r * W.cols;  // Q8_G int8 stream
  }
}

// Batched f32/f16: tokens per pass over a row block, columns per chunk (2 KiB of an f32 row), and
// tokens sharing one transposed tile (8: measured 1.6x faster than 4, despite some spilling on AVX2).
constexpr int kTokenBlock = 64;
constexpr int64_t kColChunk = 512;
constexpr int kNT = 8;
// Repacked int8: tokens per pass over a row group. AVX-512's 32 vector registers hold 8 tokens'
// integer and float accumulators; AVX2's and AVX-VNNI's 16 hold 4.
constexpr int kPackedNT = BF_VNNI && !BF_VNNI_VEX ? 8 : 4;

// rows.template operator()<T>() with T the int8 type W has (simd_quantized: Q8_0, Q4_0, else Q8_G).
template <class Rows>
void with_int8_type(DType type, const Rows& rows) {
  switch (type) {
    case DType::Q8_0: rows.template operator()<DType::Q8_0>(); break;
    case DType::Q4_0: rows.template operator()<DType::Q4_0>(); break;
    default: rows.template operator()<DType::Q8_G>(); break;
  }
}

// For prefetching, with steps of `step` rows (8; 16 for packed_rows16): the block of one step two
// steps after the one at row r, within [r0, r1) (null past the end; the first blocks are left to
// the hardware prefetcher), and its bytes. Two steps ahead measured best (one step ahead leaves too
// little lead time to hide DRAM latency).
struct BlockAhead {
  const Matrix& W;
  int64_t r1;
  const uint8_t* next(int64_t r, int64_t step = 8) const {
    return r + 2 * step < r1 ? static_cast<const uint8_t*>(W.data) + row_offset(W, r + 2 * step) : nullptr;
  }
  int64_t bytes(int64_t r, int64_t step = 8) const {
    return row_offset(W, std::min(r1, r + 3 * step)) - row_offset(W, std::min(r1, r + 2 * step));
  }
};

// pass<NT>(t) over the tokens [0, n): kNT at a time, then 4, then one.
template <int kNT, class Pass>
void token_passes(int n, const Pass& pass) {
  int t = 0;
  for (; t + kNT <= n; t += kNT) pass.template operator()<kNT>(t);
  for (; t + 4 <= n; t += 4) pass.template operator()<4>(t);
  for (; t < n; t++) pass.template operator()<1>(t);
}

// Decode: stream each 8-row block once, prefetching the block ahead. A path of its own (not
// matmul with n = 1): the JIT specializes this function, and compiles faster without prefill's.
void matvec(float* out, const Matrix& W, const float* x, const QuantizedVector* xq, int64_t r0, int64_t r1) {
  const BlockAhead ahead{W, r1};
  const bool quant = matrix_uses_quantized_activation(W);
  int64_t r = r0;
  if (packed(W)) {
    // Whole 8-row groups here; a range starting inside one (and the tail) goes to the reference.
    const int64_t head = std::min(r1, (r0 + 7) & ~int64_t(7));
    if (r0 < head) reference_kernels().matvec(out, W, x, xq, r0, head);
    r = head;
    if (xq->sums) {
      // 8 rows at a time even on AVX-512: packed_rows16 measured 10-25 % slower here (decode
      // streams memory; two interleaved block streams prefetch worse than one).
      const auto rows = [&]<DType T>() {
        for (; r + 8 <= r1; r += 8) packed_rows<T, 1>(out + (r - r0), 0, W, xq, r / 8, ahead.next(r), ahead.bytes(r));
      };
      with_packed_type(W.type, rows);
    }
  } else if (quant && simd_quantized(W)) {
    // Q4_0's offset term depends on the activation only: once per call (up to 64K columns).
    constexpr int64_t kMaxBlocks = 2048;
    int32_t x8[kMaxBlocks];
    const bool hoist = W.type == DType::Q4_0 && W.cols / kBlock <= kMaxBlocks;
    if (hoist)
      for (int64_t g = 0; g < W.cols / kBlock; g++) {
        int32_t sum = 0;
        for (int k = 0; k < kBlock; k++) sum += xq->q[g * kBlock + k];
        x8[g] = 8 * sum;
      }
    const auto rows = [&]<DType T>() {
      for (; r + 8 <= r1; r += 8)
        quant_rows<T, 1>(out + (r - r0), 0, W, xq, r, ahead.next(r), ahead.bytes(r), hoist ? x8 : nullptr);
    };
    with_int8_type(W.type, rows);
  } else if (!quant && (W.type == DType::F32 || W.type == DType::F16)) {
    for (; r + 8 <= r1; r += 8) {
      if (W.type == DType::F16) {
        float_rows<true, 1>(out + (r - r0), 0, W, x, 0, r, 0, W.cols, nullptr, ahead.next(r), ahead.bytes(r));
      } else {
        float_rows<false, 1>(out + (r - r0), 0, W, x, 0, r, 0, W.cols, nullptr, ahead.next(r), ahead.bytes(r));
      }
    }
  }
  if (r < r1) reference_kernels().matvec(out + (r - r0), W, x, xq, r, r1);
}

void matmul(float* out, int64_t ldo, const Matrix& W, const float* x, int64_t ldx,
            const QuantizedVector* xq, int n, int64_t r0, int64_t r1) {
  if (n == 1) {
    matvec(out, W, x, xq, r0, r1);
    return;
  }
  const BlockAhead ahead{W, r1};
  const bool quant = matrix_uses_quantized_activation(W);
  int64_t r = r0;
  if (packed(W)) {
    const int64_t head = std::min(r1, (r0 + 7) & ~int64_t(7));
    if (r0 < head) reference_kernels().matmul(out, ldo, W, x, ldx, xq, n, r0, head);
    r = head;
    bool sums = true;
    for (int t = 0; t < n; t++) sums = sums && xq[t].sums;
    // kPackedNT tokens per pass over a row group (its blocks stay in L1/L2 for the later passes).
    const auto rows = [&]<DType T>() {
#if BF_PACKED16
      for (; sums && r + 16 <= r1; r += 16)
        token_passes<8>(n, [&]<int NT>(int t) {
          packed_rows16<T, NT>(out + t * ldo + (r - r0), ldo, W, xq + t, r / 8, t == 0 ? ahead.next(r, 16) : nullptr,
                               ahead.bytes(r, 16));
        });
#endif
      for (; sums && r + 8 <= r1; r += 8)
        token_passes<kPackedNT>(n, [&]<int NT>(int t) {
          packed_rows<T, NT>(out + t * ldo + (r - r0), ldo, W, xq + t, r / 8, t == 0 ? ahead.next(r) : nullptr,
                             ahead.bytes(r));
        });
    };
    with_packed_type(W.type, rows);
  } else if (quant && simd_quantized(W)) {
    // 16 tokens per pass over a row block, then 4, then one at a time; only the first pass streams
    // the block from memory (prefetching the one ahead), later ones hit the cache.
    const auto rows = [&]<DType T>() {
      for (; r + 8 <= r1; r += 8)
        token_passes<16>(n, [&]<int NT>(int t) {
          quant_rows<T, NT>(out + t * ldo + (r - r0), ldo, W, xq + t, r, t == 0 ? ahead.next(r) : nullptr,
                            ahead.bytes(r));
        });
    };
    with_int8_type(W.type, rows);
  } else if (!quant && (W.type == DType::F32 || W.type == DType::F16)) {
    const bool f16 = W.type == DType::F16;
    for (; r + 8 <= r1; r += 8) {
      // Column chunks small enough that the 8 rows' chunk stays in L1 for every token.
      alignas(32) float carry[kTokenBlock * 8];
      for (int t0 = 0; t0 < n; t0 += kTokenBlock) {
        const int nt = std::min(kTokenBlock, n - t0);
        for (int64_t j0 = 0, j1; j0 < W.cols; j0 = j1) {
          j1 = W.cols - j0 > kColChunk ? j0 + kColChunk : W.cols;
          int t = 0;
          for (; t + kNT <= nt; t += kNT) {
            float* o = out + (t0 + t) * ldo + (r - r0);
            const float* xt = x + (t0 + t) * ldx;
            f16 ? float_rows<true, kNT>(o, ldo, W, xt, ldx, r, j0, j1, carry + 8 * t, nullptr, 0)
                : float_rows<false, kNT>(o, ldo, W, xt, ldx, r, j0, j1, carry + 8 * t, nullptr, 0);
          }
          for (; t < nt; t++) {
            float* o = out + (t0 + t) * ldo + (r - r0);
            const float* xt = x + (t0 + t) * ldx;
            f16 ? float_rows<true, 1>(o, ldo, W, xt, ldx, r, j0, j1, carry + 8 * t, nullptr, 0)
                : float_rows<false, 1>(o, ldo, W, xt, ldx, r, j0, j1, carry + 8 * t, nullptr, 0);
          }
        }
      }
    }
  }
  if (r < r1) reference_kernels().matmul(out + (r - r0), ldo, W, x, ldx, xq, n, r, r1);
}

// Scores of 8 * NG positions from t: NG independent accumulators (8 positions each, in lanes), so
// the adds' latency overlaps; each lane sums q.k in the reference's order.
template <int NG>
inline void attention_scores(float* att, const float* q, const float* k, int t, int head_size, int64_t stride,
                             float scale) {
  __m256 acc[NG];
  for (int g = 0; g < NG; g++) acc[g] = _mm256_setzero_ps();
  for (int i = 0; i < head_size; i += 8) {
#pragma GCC unroll 4
    for (int g = 0; g < NG; g++) {
      __m256 kt[8];
#pragma GCC unroll 8
      for (int r = 0; r < 8; r++) kt[r] = _mm256_loadu_ps(k + (t + 8 * g + r) * stride + i);
      transpose8(kt);
#pragma GCC unroll 8
      for (int c = 0; c < 8; c++) acc[g] = _mm256_add_ps(acc[g], _mm256_mul_ps(_mm256_set1_ps(q[i + c]), kt[c]));
    }
  }
  for (int g = 0; g < NG; g++) _mm256_storeu_ps(att + t + 8 * g, _mm256_div_ps(acc[g], _mm256_set1_ps(scale)));
}

// out[0 .. 8 * NB) = sum over positions p (in order) of att[p] * v[p][..]: NB independent
// accumulators (head elements in lanes), each element summed in the reference's order.
template <int NB>
inline void attention_values(float* out, const float* att, const float* v, int pos, int64_t stride) {
  __m256 o[NB];
  for (int b = 0; b < NB; b++) o[b] = _mm256_setzero_ps();
  for (int p = 0; p <= pos; p++) {
    const __m256 a = _mm256_set1_ps(att[p]);
#pragma GCC unroll 8
    for (int b = 0; b < NB; b++) o[b] = _mm256_add_ps(o[b], _mm256_mul_ps(a, _mm256_loadu_ps(v + p * stride + 8 * b)));
  }
  for (int b = 0; b < NB; b++) _mm256_storeu_ps(out + 8 * b, o[b]);
}

void attention(float* out, float* att, const float* q, const float* k, const float* v, int pos,
               int head_size, int64_t stride) {
  if (head_size % 8 != 0) {
    reference_kernels().attention(out, att, q, k, v, pos, head_size, stride);
    return;
  }
  const float scale = std::sqrt(float(head_size));
  int t = 0;
  for (; t + 32 <= pos + 1; t += 32) attention_scores<4>(att, q, k, t, head_size, stride, scale);
  for (; t + 8 <= pos + 1; t += 8) attention_scores<1>(att, q, k, t, head_size, stride, scale);
  for (; t <= pos; t++) {
    const float* kt = k + t * stride;
    float score = 0.0f;
    for (int i = 0; i < head_size; i++) score += q[i] * kt[i];
    att[t] = score / scale;
  }
  reference_kernels().softmax(att, pos + 1);
  int i = 0;
  for (; i + 64 <= head_size; i += 64) attention_values<8>(out + i, att, v + i, pos, stride);
  for (; i + 32 <= head_size; i += 32) attention_values<4>(out + i, att, v + i, pos, stride);
  for (; i < head_size; i += 8) attention_values<1>(out + i, att, v + i, pos, stride);
}

// Per group: s = max|x| / 127, q = lround(x / s), exactly as the reference: the max is exact, the
// division is IEEE in both, and lround's half-away-from-zero is trunc(v) + sign(v) when
// |v - trunc(v)| >= 0.5 (that difference is exact). Groups not a multiple of 8 use the reference.
void quantize(QuantizedVector& xq, const float* x) {
  const int32_t G = xq.group;
  if (G % 8 != 0) {
    reference_kernels().quantize(xq, x);
    return;
  }
  const __m256 sign = _mm256_set1_ps(-0.0f), half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
  const int64_t groups = xq.n / G;
  for (int64_t g = 0; g < groups; g++) {
    const float* xg = x + g * G;
    __m256 m = _mm256_setzero_ps();
    for (int i = 0; i < G; i += 8) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(xg + i)));
    alignas(32) float lane[8];
    _mm256_store_ps(lane, m);
    float amax = 0.0f;
    for (float l : lane) amax = std::fmax(amax, l);
    const float scale = amax / 127.0f;
    xq.s[g] = scale;
    int8_t* q = xq.q + g * G;
    if (scale == 0.0f) {
      std::memset(q, 0, size_t(G));
      if (xq.sums) xq.sums[g] = 0;
      continue;
    }
    const __m256 vs = _mm256_set1_ps(scale);
    __m256i total = _mm256_setzero_si256();
    for (int i = 0; i < G; i += 8) {
      const __m256 v = _mm256_div_ps(_mm256_loadu_ps(xg + i), vs);
      const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
      const __m256 away = _mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_sub_ps(v, t)), half, _CMP_GE_OQ);
      const __m256 r = _mm256_add_ps(t, _mm256_and_ps(away, _mm256_or_ps(_mm256_and_ps(v, sign), one)));
      const __m256i i32 = _mm256_cvttps_epi32(r);
      total = _mm256_add_epi32(total, i32);
      const __m256i i8 = _mm256_packs_epi16(_mm256_packs_epi32(i32, i32), _mm256_setzero_si256());
      // bytes 0..3 of each 128-bit lane hold elements 0..3 and 4..7
      const __m128i lo = _mm256_castsi256_si128(i8), hi = _mm256_extracti128_si256(i8, 1);
      _mm_storel_epi64(reinterpret_cast<__m128i*>(q + i), _mm_unpacklo_epi32(lo, hi));
    }
    if (xq.sums) xq.sums[g] = _mm256_cvtsi256_si32(hsum_broadcast(total));
  }
}

}  // namespace

const Kernels& kernels() {
  static const Kernels k = [] {
    Kernels t = reference_kernels();
    t.name = BF_SIMD_NAME;
    t.matvec = matvec;
    t.quantize = quantize;
    t.matmul = matmul;
    t.attention = attention;
    return t;
  }();
  return k;
}

#if BF_STREAM_SUM_256
// The bandwidth probe for the 256-bit families. Four independent accumulators keep the loads, not
// the add latency, the limit.
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
#endif

}  // namespace bf::BF_SIMD_NS

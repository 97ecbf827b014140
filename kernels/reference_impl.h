// Scalar reference kernels. Plain loops in run.c's operation order: this is the oracle.
//
// Definitions, not declarations: included by exactly one translation unit per program image,
// kernels/reference.cpp for the AOT build and jit/bitcode/matvec_entry.cpp for the JIT's bitcode,
// which must carry the reference (and fp16_to_f32, which the JIT replaces) in its own module.
#pragma once

#include "kernels/kernels.h"

#include <cassert>
#include <cmath>
#include <cstring>

namespace bf {

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::Q8_0: return "Q8_0";
    case DType::Q4_0: return "Q4_0";
    case DType::Q8_G: return "Q8_G";
    case DType::Q8_0x8: return "Q8_0x8";
    case DType::Q4_0x8: return "Q4_0x8";
  }
  return "?";
}

DType file_dtype(DType t) {
  switch (t) {
    case DType::Q8_0x8: return DType::Q8_0;
    case DType::Q4_0x8: return DType::Q4_0;
    default: return t;
  }
}

DType repacked_dtype(DType t) {
  switch (t) {
    case DType::Q8_0: return DType::Q8_0x8;
    case DType::Q4_0: return DType::Q4_0x8;
    default: return t;
  }
}

bool repackable(const Matrix& W) {
  return (W.type == DType::Q8_0 || W.type == DType::Q4_0) && W.rows % 8 == 0 && W.cols % kBlock == 0;
}

void repack_matrix(void* dst, const Matrix& W, int64_t g0, int64_t g1) {
  assert(repackable(W) && 0 <= g0 && g0 <= g1 && g1 <= W.rows / 8);
  const int64_t blocks = W.cols / kBlock;  // per row
  // 4-byte words: word k of row i's block goes to word 8k + i (an 8 x 8 or 8 x 4 transpose).
  const auto move_words = [](uint8_t* to, const void* from, int i, int words, uint32_t flip) {
    for (int k = 0; k < words; k++) {
      uint32_t v;
      std::memcpy(&v, static_cast<const uint8_t*>(from) + 4 * k, 4);
      v ^= flip;
      std::memcpy(to + 32 * k + 4 * i, &v, 4);
    }
  };
  for (int64_t R = g0; R < g1; R++) {
    for (int64_t g = 0; g < blocks; g++) {
      if (W.type == DType::Q8_0) {
        BlockQ8_0x8& o = static_cast<BlockQ8_0x8*>(dst)[R * blocks + g];
        for (int i = 0; i < 8; i++) {
          const BlockQ8_0& b = static_cast<const BlockQ8_0*>(W.data)[(8 * R + i) * blocks + g];
          o.d[i] = b.d;
          move_words(o.qs, b.qs, i, kBlock / 4, 0x80808080u);
        }
      } else {
        BlockQ4_0x8& o = static_cast<BlockQ4_0x8*>(dst)[R * blocks + g];
        for (int i = 0; i < 8; i++) {
          const BlockQ4_0& b = static_cast<const BlockQ4_0*>(W.data)[(8 * R + i) * blocks + g];
          o.d[i] = b.d;
          move_words(o.qs, b.qs, i, kBlock / 8, 0);
        }
      }
    }
  }
}

int32_t matrix_group(const Matrix& m) {
  switch (m.type) {
    case DType::Q8_0:
    case DType::Q4_0:
    case DType::Q8_0x8:
    case DType::Q4_0x8: return kBlock;
    case DType::Q8_G: return m.group;
    default: return 1;
  }
}

uint64_t matrix_bytes(const Matrix& m) {
  const uint64_t n = uint64_t(m.rows) * uint64_t(m.cols);
  switch (m.type) {
    case DType::F32: return n * 4;
    case DType::F16: return n * 2;
    case DType::Q8_0:
    case DType::Q8_0x8: return (n / kBlock) * sizeof(BlockQ8_0);
    case DType::Q4_0:
    case DType::Q4_0x8: return (n / kBlock) * sizeof(BlockQ4_0);
    case DType::Q8_G: return n + (n / uint64_t(m.group)) * 4;
  }
  return 0;
}

bool matrix_uses_quantized_activation(const Matrix& m) {
  const int32_t g = matrix_group(m);
  return g > 1 && m.cols % g == 0;
}

float fp16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalize
      int e = -1;
      do {
        e++;
        mant <<= 1;
      } while ((mant & 0x400) == 0);
      bits = sign | uint32_t(127 - 15 - e) << 23 | (mant & 0x3ff) << 13;
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | mant << 13;
  } else {
    bits = sign | (exp + 127 - 15) << 23 | mant << 13;
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t f32_to_fp16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint16_t sign = uint16_t((x >> 16) & 0x8000);
  const uint32_t absx = x & 0x7fffffff;
  if (absx >= 0x7f800000) return sign | 0x7c00 | (absx > 0x7f800000 ? 0x200 : 0);  // inf / nan
  if (absx >= 0x477ff000) return sign | 0x7c00;  // rounds to >= 65520: overflow to inf
  if (absx < 0x38800000) {                       // below the smallest normal: subnormal or zero
    if (absx < 0x33000000) return sign;          // < 2^-25 rounds to zero
    const uint32_t e = absx >> 23;
    const uint32_t m = (absx & 0x7fffff) | 0x800000;
    const uint32_t shift = 126 - e;  // 14..24
    uint32_t r = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1))) r++;
    return sign | uint16_t(r);
  }
  uint32_t r = ((absx >> 13) - (112u << 10));
  const uint32_t rem = absx & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (r & 1))) r++;
  return sign | uint16_t(r);
}

namespace {

// Row `row`'s block column g of a repacked matrix as the block it was repacked from.
BlockQ8_0 unpack_q8_0x8(const Matrix& W, int64_t row, int64_t g) {
  const BlockQ8_0x8& p = static_cast<const BlockQ8_0x8*>(W.data)[(row / 8) * (W.cols / kBlock) + g];
  const int i = int(row % 8);
  BlockQ8_0 b;
  b.d = p.d[i];
  for (int e = 0; e < kBlock; e++) b.qs[e] = int8_t(p.qs[32 * (e / 4) + 4 * i + e % 4] ^ 0x80);
  return b;
}

BlockQ4_0 unpack_q4_0x8(const Matrix& W, int64_t row, int64_t g) {
  const BlockQ4_0x8& p = static_cast<const BlockQ4_0x8*>(W.data)[(row / 8) * (W.cols / kBlock) + g];
  const int i = int(row % 8);
  BlockQ4_0 b;
  b.d = p.d[i];
  for (int e = 0; e < kBlock / 2; e++) b.qs[e] = p.qs[32 * (e / 4) + 4 * i + e % 4];
  return b;
}

float q4_0_element(const BlockQ4_0& b, int j) {
  const int nib = j < 16 ? (b.qs[j] & 0x0f) : (b.qs[j - 16] >> 4);
  return fp16_to_f32(b.d) * float(nib - 8);
}

// Element e of a quantized / half stream, dequantized.
float element(const Matrix& W, int64_t e) {
  switch (W.type) {
    case DType::F32: return static_cast<const float*>(W.data)[e];
    case DType::F16: return fp16_to_f32(static_cast<const uint16_t*>(W.data)[e]);
    case DType::Q8_0: {
      const BlockQ8_0& b = static_cast<const BlockQ8_0*>(W.data)[e / kBlock];
      return fp16_to_f32(b.d) * float(b.qs[e % kBlock]);
    }
    case DType::Q4_0: return q4_0_element(static_cast<const BlockQ4_0*>(W.data)[e / kBlock], int(e % kBlock));
    case DType::Q8_G:
      return float(static_cast<const int8_t*>(W.data)[e]) * W.scales[e / W.group];
    case DType::Q8_0x8: {  // rows start on block boundaries (repackable)
      const BlockQ8_0 b = unpack_q8_0x8(W, e / W.cols, (e % W.cols) / kBlock);
      return fp16_to_f32(b.d) * float(b.qs[e % kBlock]);
    }
    case DType::Q4_0x8:
      return q4_0_element(unpack_q4_0x8(W, e / W.cols, (e % W.cols) / kBlock), int(e % kBlock));
  }
  return 0.0f;
}

void ref_quantize(QuantizedVector& xq, const float* x) {
  assert(xq.group > 0 && xq.n % xq.group == 0);
  const int64_t groups = xq.n / xq.group;
  for (int64_t g = 0; g < groups; g++) {
    const float* xg = x + g * xq.group;
    float amax = 0.0f;
    for (int i = 0; i < xq.group; i++) amax = std::fmax(amax, std::fabs(xg[i]));
    const float scale = amax / 127.0f;
    xq.s[g] = scale;
    for (int i = 0; i < xq.group; i++) {
      const float v = scale != 0.0f ? xg[i] / scale : 0.0f;
      xq.q[g * xq.group + i] = int8_t(std::lround(v));
    }
    if (xq.sums) {
      int32_t sum = 0;
      for (int i = 0; i < xq.group; i++) sum += xq.q[g * xq.group + i];
      xq.sums[g] = sum;
    }
  }
}

// Integer dot of one row against the quantized activation, group by group (runq.c / llama.cpp).
float dot_quantized(const Matrix& W, int64_t row, const QuantizedVector& xq) {
  const int32_t G = matrix_group(W);
  const int64_t groups = W.cols / G;
  const int64_t g0 = row * groups;  // rows start on group boundaries here
  float sum = 0.0f;
  for (int64_t g = 0; g < groups; g++) {
    const int8_t* xs = xq.q + g * G;
    int32_t isum = 0;
    float wscale = 0.0f;
    switch (W.type) {
      case DType::Q8_0:
      case DType::Q8_0x8: {
        const BlockQ8_0 b = W.type == DType::Q8_0 ? static_cast<const BlockQ8_0*>(W.data)[g0 + g] : unpack_q8_0x8(W, row, g);
        for (int i = 0; i < kBlock; i++) isum += int32_t(b.qs[i]) * xs[i];
        wscale = fp16_to_f32(b.d);
        break;
      }
      case DType::Q4_0:
      case DType::Q4_0x8: {
        const BlockQ4_0 b = W.type == DType::Q4_0 ? static_cast<const BlockQ4_0*>(W.data)[g0 + g] : unpack_q4_0x8(W, row, g);
        for (int i = 0; i < kBlock / 2; i++) {
          isum += (int32_t(b.qs[i] & 0x0f) - 8) * xs[i];
          isum += (int32_t(b.qs[i] >> 4) - 8) * xs[i + kBlock / 2];
        }
        wscale = fp16_to_f32(b.d);
        break;
      }
      case DType::Q8_G: {
        const int8_t* ws = static_cast<const int8_t*>(W.data) + (g0 + g) * G;
        for (int i = 0; i < G; i++) isum += int32_t(ws[i]) * xs[i];
        wscale = W.scales[g0 + g];
        break;
      }
      default: assert(false);
    }
    sum += float(isum) * wscale * xq.s[g];
  }
  return sum;
}

void ref_matvec(float* out, const Matrix& W, const float* x, const QuantizedVector* xq,
                int64_t r0, int64_t r1) {
  assert(0 <= r0 && r0 <= r1 && r1 <= W.rows);
  if (matrix_uses_quantized_activation(W)) {
    assert(xq && xq->n == W.cols && xq->group == matrix_group(W));
    for (int64_t r = r0; r < r1; r++) out[r - r0] = dot_quantized(W, r, *xq);
    return;
  }
  if (W.type == DType::F32) {
    const float* w = static_cast<const float*>(W.data);
    for (int64_t r = r0; r < r1; r++) {
      const float* wr = w + r * W.cols;
      float val = 0.0f;
      for (int64_t j = 0; j < W.cols; j++) val += wr[j] * x[j];
      out[r - r0] = val;
    }
    return;
  }
  for (int64_t r = r0; r < r1; r++) {
    float val = 0.0f;
    for (int64_t j = 0; j < W.cols; j++) val += element(W, r * W.cols + j) * x[j];
    out[r - r0] = val;
  }
}

void ref_rmsnorm(float* o, const float* x, const float* w, int n, float eps) {
  float ss = 0.0f;
  for (int j = 0; j < n; j++) ss += x[j] * x[j];
  ss /= float(n);
  ss += eps;
  ss = 1.0f / std::sqrt(ss);
  for (int j = 0; j < n; j++) o[j] = w[j] * (ss * x[j]);
}

void ref_softmax(float* x, int n) {
  float maxv = x[0];
  for (int i = 1; i < n; i++)
    if (x[i] > maxv) maxv = x[i];
  float sum = 0.0f;
  for (int i = 0; i < n; i++) {
    x[i] = std::exp(x[i] - maxv);
    sum += x[i];
  }
  for (int i = 0; i < n; i++) x[i] /= sum;
}

void ref_rope(float* q, float* k, int pos, int dim, int kv_dim, int head_size, float theta,
              RopeStyle style) {
  const int half = head_size / 2;
  for (int i = 0; i < dim; i += 2) {
    const int head_dim = i % head_size;
    const float freq = 1.0f / std::pow(theta, float(head_dim) / float(head_size));
    const float val = float(pos) * freq;
    const float fcr = std::cos(val), fci = std::sin(val);
    // Interleaved rotates (i, i+1); HalfSplit rotates element head_dim/2 of each half.
    int a = i, b = i + 1;
    if (style == RopeStyle::HalfSplit) {
      const int head = i - head_dim;
      a = head + head_dim / 2;
      b = a + half;
    }
    const int rotn = i < kv_dim ? 2 : 1;
    for (int v = 0; v < rotn; v++) {
      float* vec = v == 0 ? q : k;
      const float v0 = vec[a], v1 = vec[b];
      vec[a] = v0 * fcr - v1 * fci;
      vec[b] = v0 * fci + v1 * fcr;
    }
  }
}

void ref_attention(float* out, float* att, const float* q, const float* k, const float* v, int pos,
                   int head_size, int64_t stride) {
  const float scale = std::sqrt(float(head_size));
  for (int t = 0; t <= pos; t++) {
    const float* kt = k + t * stride;
    float score = 0.0f;
    for (int i = 0; i < head_size; i++) score += q[i] * kt[i];
    att[t] = score / scale;
  }
  ref_softmax(att, pos + 1);
  for (int i = 0; i < head_size; i++) out[i] = 0.0f;
  for (int t = 0; t <= pos; t++) {
    const float* vt = v + t * stride;
    const float a = att[t];
    for (int i = 0; i < head_size; i++) out[i] += a * vt[i];
  }
}

void ref_swiglu(float* hb, const float* hb2, int n) {
  for (int i = 0; i < n; i++) {
    float val = hb[i];
    val *= (1.0f / (1.0f + std::exp(-val)));
    val *= hb2[i];
    hb[i] = val;
  }
}

void ref_dequantize_row(float* out, const Matrix& W, int64_t row) {
  assert(row >= 0 && row < W.rows);
  for (int64_t j = 0; j < W.cols; j++) out[j] = element(W, row * W.cols + j);
}

void ref_matmul(float* out, int64_t ldo, const Matrix& W, const float* x, int64_t ldx,
                const QuantizedVector* xq, int n, int64_t r0, int64_t r1) {
  for (int t = 0; t < n; t++) ref_matvec(out + t * ldo, W, x + t * ldx, xq ? xq + t : nullptr, r0, r1);
}

}  // namespace

const Kernels& reference_kernels() {
  static const Kernels k = {
      "scalar",     ref_matvec,    ref_quantize,   ref_rmsnorm,        ref_softmax,
      ref_rope,     ref_attention, ref_swiglu,     ref_dequantize_row, ref_matmul,
  };
  return k;
}

}  // namespace bf

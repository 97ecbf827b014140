// Random weight matrices of every storage type, for tests that compare a kernel variant (SIMD,
// JIT) against the reference on the same bytes.
#pragma once

#include <cstring>
#include <random>
#include <vector>

#include "kernels/kernels.h"

namespace bf::test {

struct RandomMatrix {
  Matrix m;
  std::vector<uint8_t> bytes;
  std::vector<float> scales;  // Q8_G only
};

// Half-precision scales, including subnormals (they take fp16_to_f32's slow path).
inline uint16_t random_half(std::mt19937& rng) {
  return rng() % 4 == 0 ? uint16_t(rng() % 0x400) : f32_to_fp16(std::uniform_real_distribution<float>(0.001f, 0.1f)(rng));
}

// Quantized values cover the full byte range (-128 included): integer dots must be exact for any
// stored weight, not only for what a quantizer would write.
inline RandomMatrix random_matrix(DType type, int64_t rows, int64_t cols, int32_t group, std::mt19937& rng) {
  RandomMatrix t;
  t.m.type = type;
  t.m.rows = rows;
  t.m.cols = cols;
  const int64_t n = rows * cols;
  std::uniform_real_distribution<float> f(-1.0f, 1.0f);
  switch (type) {
    case DType::F32:
      t.bytes.resize(size_t(n) * 4);
      for (int64_t i = 0; i < n; i++) {
        const float v = f(rng);
        std::memcpy(&t.bytes[size_t(i) * 4], &v, 4);
      }
      break;
    case DType::F16:
      t.bytes.resize(size_t(n) * 2);
      for (int64_t i = 0; i < n; i++) {
        const uint16_t h = f32_to_fp16(f(rng));
        std::memcpy(&t.bytes[size_t(i) * 2], &h, 2);
      }
      break;
    case DType::Q8_0:
    case DType::Q4_0: {
      const size_t bs = type == DType::Q8_0 ? sizeof(BlockQ8_0) : sizeof(BlockQ4_0);
      t.bytes.resize(size_t(n / kBlock) * bs);
      for (size_t b = 0; b < t.bytes.size(); b += bs) {
        const uint16_t d = random_half(rng);
        std::memcpy(&t.bytes[b], &d, 2);
        for (size_t i = 2; i < bs; i++) t.bytes[b + i] = uint8_t(rng());
      }
      break;
    }
    case DType::Q8_G:
      t.m.group = group;
      t.bytes.resize(size_t(n));
      for (uint8_t& v : t.bytes) v = uint8_t(rng());
      t.scales.resize(size_t(n / group));
      for (float& s : t.scales) s = std::uniform_real_distribution<float>(0.001f, 0.05f)(rng);
      t.m.scales = t.scales.data();
      break;
    case DType::Q8_0x8:
    case DType::Q4_0x8:  // made by repacked() from a Q8_0 / Q4_0 one
      break;
  }
  t.m.data = t.bytes.data();
  return t;
}

// W (repackable) in its repacked layout, with its own bytes.
inline RandomMatrix repacked(const RandomMatrix& src) {
  RandomMatrix t;
  t.m = src.m;
  t.bytes.resize(size_t(matrix_bytes(src.m)));
  repack_matrix(t.bytes.data(), src.m, 0, src.m.rows / 8);
  t.m.type = repacked_dtype(src.m.type);
  t.m.data = t.bytes.data();
  return t;
}

// A random activation for W's columns, and its int8 form when W's kernel takes one (quantized with
// the reference, as the engine does before calling any matvec variant).
struct RandomActivation {
  std::vector<float> x;
  std::vector<int8_t> q;
  std::vector<float> s;
  std::vector<int32_t> sums;
  QuantizedVector xq;
  bool use_q = false;
  const QuantizedVector* quantized() const { return use_q ? &xq : nullptr; }
};

inline RandomActivation random_activation(const Matrix& W, std::mt19937& rng) {
  RandomActivation a;
  a.x.resize(size_t(W.cols));
  for (float& v : a.x) v = std::uniform_real_distribution<float>(-2.0f, 2.0f)(rng);
  a.q.resize(a.x.size());
  a.s.resize(a.x.size());
  a.sums.resize(a.x.size());
  a.xq = {a.q.data(), a.s.data(), W.cols, matrix_group(W), a.sums.data()};
  a.use_q = matrix_uses_quantized_activation(W);
  if (a.use_q) reference_kernels().quantize(a.xq, a.x.data());
  return a;
}

}  // namespace bf::test

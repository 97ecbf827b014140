// The scalar reference kernels against independent double-precision computations.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/kernels.h"

namespace bf {
namespace {

const Kernels& K = reference_kernels();

TEST(Fp16, EveryHalfRoundTrips) {
  for (uint32_t h = 0; h < 65536; h++) {
    const float f = fp16_to_f32(uint16_t(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(f32_to_fp16(f), uint16_t(h)) << "half 0x" << std::hex << h;
  }
}

TEST(Fp16, ConversionMatchesCompiler) {
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> mag(-30.0f, 17.0f);
  for (int i = 0; i < 200000; i++) {
    const float f = std::ldexp(1.0f + float(rng() % 8388608) / 8388608.0f, int(mag(rng))) * (rng() & 1 ? -1 : 1);
    const _Float16 h = static_cast<_Float16>(f);
    uint16_t bits;
    std::memcpy(&bits, &h, 2);
    ASSERT_EQ(f32_to_fp16(f), bits) << f;
    ASSERT_EQ(fp16_to_f32(bits), static_cast<float>(h));
  }
}

// A random matrix of the given type, plus its dequantized values for checking.
struct TestMatrix {
  Matrix m;
  std::vector<uint8_t> bytes;
  std::vector<float> scales;
  std::vector<double> values;  // dequantized, row-major
};

TestMatrix make_matrix(DType type, int64_t rows, int64_t cols, std::mt19937& rng, int group = 8) {
  TestMatrix t;
  const int64_t n = rows * cols;
  std::normal_distribution<float> dist(0.0f, 1.0f);
  t.values.resize(size_t(n));
  switch (type) {
    case DType::F32: {
      t.bytes.resize(size_t(n) * 4);
      float* f = reinterpret_cast<float*>(t.bytes.data());
      for (int64_t i = 0; i < n; i++) t.values[size_t(i)] = f[i] = dist(rng);
      break;
    }
    case DType::F16: {
      t.bytes.resize(size_t(n) * 2);
      uint16_t* h = reinterpret_cast<uint16_t*>(t.bytes.data());
      for (int64_t i = 0; i < n; i++) {
        h[i] = f32_to_fp16(dist(rng));
        t.values[size_t(i)] = fp16_to_f32(h[i]);
      }
      break;
    }
    case DType::Q8_0:
    case DType::Q4_0: {
      const bool q8 = type == DType::Q8_0;
      const int64_t blocks = n / kBlock;
      t.bytes.resize(size_t(blocks) * (q8 ? sizeof(BlockQ8_0) : sizeof(BlockQ4_0)));
      for (int64_t b = 0; b < blocks; b++) {
        const uint16_t d = f32_to_fp16(0.01f + float(rng() % 1000) / 20000.0f);
        const double dd = fp16_to_f32(d);
        if (q8) {
          BlockQ8_0& blk = reinterpret_cast<BlockQ8_0*>(t.bytes.data())[b];
          blk.d = d;
          for (int j = 0; j < kBlock; j++) {
            blk.qs[j] = int8_t(int(rng() % 255) - 127);
            t.values[size_t(b * kBlock + j)] = dd * blk.qs[j];
          }
        } else {
          BlockQ4_0& blk = reinterpret_cast<BlockQ4_0*>(t.bytes.data())[b];
          blk.d = d;
          for (int j = 0; j < 16; j++) {
            const int lo = int(rng() % 16), hi = int(rng() % 16);
            blk.qs[j] = uint8_t(lo | hi << 4);
            t.values[size_t(b * kBlock + j)] = dd * (lo - 8);
            t.values[size_t(b * kBlock + j + 16)] = dd * (hi - 8);
          }
        }
      }
      break;
    }
    case DType::Q8_G: {
      t.bytes.resize(size_t(n));
      t.scales.resize(size_t(n / group));
      for (auto& s : t.scales) s = 0.001f + float(rng() % 1000) / 50000.0f;
      for (int64_t i = 0; i < n; i++) {
        const int8_t q = int8_t(int(rng() % 255) - 127);
        t.bytes[size_t(i)] = uint8_t(q);
        t.values[size_t(i)] = double(q) * t.scales[size_t(i / group)];
      }
      t.m.scales = t.scales.data();
      t.m.group = group;
      break;
    }
  }
  t.m.type = type;
  t.m.data = t.bytes.data();
  t.m.rows = rows;
  t.m.cols = cols;
  return t;
}

// matvec against a double-precision dot of the dequantized weights with the activation the
// kernel is defined to use (the int8-quantized one where rows start on group boundaries).
void check_matvec(DType type, int64_t rows, int64_t cols, int group = 8) {
  std::mt19937 rng(uint32_t(rows * 1000 + cols));
  TestMatrix t = make_matrix(type, rows, cols, rng, group);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(cols));
  for (auto& v : x) v = dist(rng);
  std::vector<double> xd(x.begin(), x.end());
  std::vector<int8_t> q(static_cast<size_t>(cols));
  std::vector<float> s(static_cast<size_t>(cols));
  QuantizedVector xq{q.data(), s.data(), cols, matrix_group(t.m)};
  const bool quantized = matrix_uses_quantized_activation(t.m);
  if (quantized) {
    K.quantize(xq, x.data());
    for (int64_t j = 0; j < cols; j++) xd[size_t(j)] = double(q[size_t(j)]) * s[size_t(j / xq.group)];
  }
  // A row range in the middle, to check r0/r1 handling.
  const int64_t r0 = rows / 3, r1 = rows - rows / 4;
  std::vector<float> out(size_t(r1 - r0), -1.0f);
  K.matvec(out.data(), t.m, x.data(), quantized ? &xq : nullptr, r0, r1);
  for (int64_t r = r0; r < r1; r++) {
    double want = 0.0, mag = 0.0;
    for (int64_t j = 0; j < cols; j++) {
      want += t.values[size_t(r * cols + j)] * xd[size_t(j)];
      mag += std::fabs(t.values[size_t(r * cols + j)] * xd[size_t(j)]);
    }
    // float accumulation: error grows with the number of terms and their magnitude
    ASSERT_NEAR(out[size_t(r - r0)], want, 1e-6 * mag * double(cols) + 1e-6)
        << dtype_name(type) << " " << rows << "x" << cols << " row " << r;
  }
}

TEST(Matvec, F32) { check_matvec(DType::F32, 37, 67); }
TEST(Matvec, F16) { check_matvec(DType::F16, 29, 45); }
TEST(Matvec, Q8_0Aligned) { check_matvec(DType::Q8_0, 19, 96); }
TEST(Matvec, Q8_0RowsCrossBlocks) { check_matvec(DType::Q8_0, 64, 172); }
TEST(Matvec, Q4_0Aligned) { check_matvec(DType::Q4_0, 21, 160); }
TEST(Matvec, Q4_0RowsCrossBlocks) { check_matvec(DType::Q4_0, 8, 52); }
TEST(Matvec, Q8GroupAligned) { check_matvec(DType::Q8_G, 17, 64, 8); }
TEST(Matvec, Q8GroupRowsCrossGroups) { check_matvec(DType::Q8_G, 64, 172, 8); }

TEST(Quantize, ScaleMapsLargestToFullRange) {
  std::vector<float> x = {0.5f, -2.0f, 1.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
  std::vector<int8_t> q(8);
  std::vector<float> s(2);
  QuantizedVector xq{q.data(), s.data(), 8, 4};
  K.quantize(xq, x.data());
  EXPECT_FLOAT_EQ(s[0], 2.0f / 127.0f);
  EXPECT_EQ(q[1], -127);
  EXPECT_EQ(q[0], 32);  // 0.5 / (2/127) = 31.75 rounds to 32
  EXPECT_EQ(q[2], 64);  // 63.5 rounds away from zero
  EXPECT_EQ(s[1], 0.0f);
  for (int i = 4; i < 8; i++) EXPECT_EQ(q[size_t(i)], 0);
}

TEST(DequantizeRow, Q4_0NibbleOrder) {
  BlockQ4_0 b[2] = {};
  b[0].d = b[1].d = f32_to_fp16(0.5f);
  for (int j = 0; j < 16; j++) b[0].qs[j] = b[1].qs[j] = uint8_t(j | (15 - j) << 4);
  Matrix m{DType::Q4_0, b, nullptr, 0, 2, 32};
  std::vector<float> row(32);
  K.dequantize_row(row.data(), m, 1);
  for (int j = 0; j < 16; j++) {
    EXPECT_EQ(row[size_t(j)], 0.5f * float(j - 8));       // low nibbles: elements 0..15
    EXPECT_EQ(row[size_t(j + 16)], 0.5f * float(7 - j));  // high nibbles: elements 16..31
  }
}

TEST(Rmsnorm, MatchesDouble) {
  std::vector<float> x = {1.0f, -2.0f, 3.0f, 0.5f, 7.0f}, w = {1.0f, 0.5f, 2.0f, -1.0f, 0.25f}, o(5);
  K.rmsnorm(o.data(), x.data(), w.data(), 5, 1e-5f);
  double ss = 0;
  for (float v : x) ss += double(v) * v;
  const double inv = 1.0 / std::sqrt(ss / 5 + 1e-5);
  for (int i = 0; i < 5; i++) EXPECT_NEAR(o[size_t(i)], w[size_t(i)] * x[size_t(i)] * inv, 1e-6);
}

TEST(Softmax, SumsToOneAndSurvivesLargeInputs) {
  std::vector<float> x = {1000.0f, 999.0f, -1000.0f, 998.0f};
  K.softmax(x.data(), 4);
  const double e1 = std::exp(-1.0), e2 = std::exp(-2.0), z = 1 + e1 + e2;
  EXPECT_NEAR(x[0], 1 / z, 1e-7);
  EXPECT_NEAR(x[1], e1 / z, 1e-7);
  EXPECT_EQ(x[2], 0.0f);
  EXPECT_NEAR(x[3], e2 / z, 1e-7);
}

TEST(Swiglu, MatchesDouble) {
  std::vector<float> a = {-3.0f, -0.5f, 0.0f, 0.7f, 4.0f}, b = {1.0f, 2.0f, 3.0f, -1.0f, 0.5f};
  std::vector<float> want(5);
  for (int i = 0; i < 5; i++) want[size_t(i)] = float(a[size_t(i)] / (1 + std::exp(-double(a[size_t(i)]))) * b[size_t(i)]);
  K.swiglu(a.data(), b.data(), 5);
  for (int i = 0; i < 5; i++) EXPECT_NEAR(a[size_t(i)], want[size_t(i)], 1e-6);
}

TEST(Rope, RotatesAdjacentPairsByPositionTimesFrequency) {
  const int dim = 8, head = 4, pos = 3;
  std::vector<float> q(dim, 0.0f), k(dim, 0.0f);
  q[2] = 1.0f;  // pair (2,3) of head 0: frequency 10000^(-2/4) = 0.01
  K.rope(q.data(), k.data(), pos, dim, dim, head, 10000.0f, RopeStyle::Interleaved);
  EXPECT_NEAR(q[2], std::cos(0.03), 1e-6);
  EXPECT_NEAR(q[3], std::sin(0.03), 1e-6);
}

// Hugging Face's layout stores pair (2i, 2i+1) of a head at rows (i, i + head/2): rotating the
// permuted vector half-split must equal permuting the interleaved result. k has fewer heads (GQA).
TEST(Rope, HalfSplitOnPermutedEqualsInterleaved) {
  const int head = 8, dim = 32, kv_dim = 16;
  std::mt19937 rng(5);
  std::normal_distribution<float> dist;
  std::vector<float> q(dim), k(kv_dim);
  for (auto& v : q) v = dist(rng);
  for (auto& v : k) v = dist(rng);
  auto permute = [&](const std::vector<float>& v) {
    std::vector<float> p(v.size());
    for (size_t h = 0; h < v.size() / head; h++)
      for (int i = 0; i < head / 2; i++)
        for (int j = 0; j < 2; j++) p[h * head + size_t(j * head / 2 + i)] = v[h * head + size_t(2 * i + j)];
    return p;
  };
  std::vector<float> qp = permute(q), kp = permute(k);
  K.rope(q.data(), k.data(), 17, dim, kv_dim, head, 10000.0f, RopeStyle::Interleaved);
  K.rope(qp.data(), kp.data(), 17, dim, kv_dim, head, 10000.0f, RopeStyle::HalfSplit);
  EXPECT_EQ(permute(q), qp);
  EXPECT_EQ(permute(k), kp);
}

TEST(Attention, MatchesDouble) {
  const int hs = 6, pos = 4, stride = 18;
  std::mt19937 rng(9);
  std::normal_distribution<float> dist;
  std::vector<float> q(hs), kc(size_t(stride * (pos + 1))), vc(kc.size()), att(size_t(pos + 1)), out(hs);
  for (auto& v : q) v = dist(rng);
  for (auto& v : kc) v = dist(rng);
  for (auto& v : vc) v = dist(rng);
  K.attention(out.data(), att.data(), q.data(), kc.data(), vc.data(), pos, hs, stride);
  std::vector<double> w(size_t(pos + 1));
  double z = 0, mx = -1e300;
  for (int t = 0; t <= pos; t++) {
    double s = 0;
    for (int i = 0; i < hs; i++) s += double(q[size_t(i)]) * kc[size_t(t * stride + i)];
    w[size_t(t)] = s / std::sqrt(double(hs));
    mx = std::max(mx, w[size_t(t)]);
  }
  for (auto& v : w) z += (v = std::exp(v - mx));
  for (int i = 0; i < hs; i++) {
    double want = 0;
    for (int t = 0; t <= pos; t++) want += w[size_t(t)] / z * vc[size_t(t * stride + i)];
    EXPECT_NEAR(out[size_t(i)], want, 1e-5);
  }
}

}  // namespace
}  // namespace bf

// Every SIMD kernel against the scalar reference on random inputs of awkward sizes.
//
// Tolerance: zero. The SIMD kernels are designed to be bit-identical to the reference (rows in
// lanes keep each row's summation order; integer dots are exact), so results are compared with
// memcmp. That is stronger than the relative tolerance float reordering would need.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/dispatch.h"
#include "kernels/tests/random_matrix.h"

namespace bf {
namespace {

const Isa kSimdIsas[] = {Isa::Avx2, Isa::Avx512, Isa::AvxVnni};

using test::RandomMatrix;
using test::random_matrix;

void expect_same(const std::vector<float>& a, const std::vector<float>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); i++)
    ASSERT_EQ(std::memcmp(&a[i], &b[i], 4), 0) << what << " element " << i << ": " << a[i] << " vs " << b[i];
}

// Shapes not multiples of the vector width (8 floats, 16-row blocks, 32-byte blocks) on purpose.
struct Shape {
  DType type;
  int64_t rows, cols;
  int group;
};
const Shape kShapes[] = {
    {DType::F32, 1, 1, 0},    {DType::F32, 7, 13, 0},   {DType::F32, 9, 8, 0},     {DType::F32, 17, 100, 0},
    {DType::F32, 40, 172, 0}, {DType::F32, 33, 301, 0}, {DType::F16, 7, 13, 0},    {DType::F16, 25, 172, 0},
    {DType::F16, 33, 288, 0}, {DType::Q8_0, 1, 32, 0},  {DType::Q8_0, 9, 64, 0},   {DType::Q8_0, 23, 96, 0},
    {DType::Q8_0, 40, 288, 0}, {DType::Q8_0, 8, 172, 0}, {DType::Q8_0, 24, 172, 0}, {DType::Q4_0, 1, 32, 0},
    {DType::Q4_0, 9, 64, 0},  {DType::Q4_0, 23, 96, 0}, {DType::Q4_0, 40, 288, 0}, {DType::Q4_0, 24, 172, 0},
    {DType::Q8_G, 9, 64, 32}, {DType::Q8_G, 19, 128, 64}, {DType::Q8_G, 17, 40, 8}, {DType::Q8_G, 11, 96, 96},
    // longer than the batched kernel's 512-column chunk, with a ragged end
    {DType::F32, 17, 1100, 0}, {DType::F16, 9, 1031, 0}, {DType::Q8_0, 9, 1056, 0},
};

class SimdKernels : public ::testing::TestWithParam<Isa> {
 protected:
  void SetUp() override {
    if (!isa_supported(GetParam())) GTEST_SKIP() << isa_name(GetParam()) << " not supported by this CPU";
  }
  const Kernels& k() const { return kernels_for(GetParam()); }
};

TEST_P(SimdKernels, MatvecEqualsReferenceBitForBit) {
  const Kernels& ref = reference_kernels();
  for (const Shape& s : kShapes) {
    std::mt19937 rng(uint32_t(s.rows * 7919 + s.cols));
    const RandomMatrix t = random_matrix(s.type, s.rows, s.cols, s.group, rng);
    const test::RandomActivation a = test::random_activation(t.m, rng);
    const std::vector<float>& x = a.x;
    // Whole matrix, and a range starting off a row-block boundary.
    for (const auto& [r0, r1] : {std::pair<int64_t, int64_t>{0, s.rows}, {s.rows / 3, s.rows}}) {
      std::vector<float> want(size_t(r1 - r0)), got(size_t(r1 - r0), NAN);
      ref.matvec(want.data(), t.m, x.data(), a.quantized(), r0, r1);
      k().matvec(got.data(), t.m, x.data(), a.quantized(), r0, r1);
      expect_same(want, got, std::string(dtype_name(s.type)) + " " + std::to_string(s.rows) + "x" +
                                 std::to_string(s.cols) + " rows " + std::to_string(r0) + ".." +
                                 std::to_string(r1));
    }
  }
}

TEST_P(SimdKernels, MatmulEqualsMatvecPerToken) {
  const Kernels& ref = reference_kernels();
  // Tokens: 7 = one f32 tile of 8 short, int8 passes of 4 + 3 singles; 23 = f32 tiles of 8 + 7,
  // int8 passes of 16 + 4 + 3 singles.
  for (const int n : {7, 23})
  for (const Shape& s : kShapes) {
    std::mt19937 rng(uint32_t(s.rows * 31 + s.cols + n));
    const RandomMatrix t = random_matrix(s.type, s.rows, s.cols, s.group, rng);
    const int64_t ldx = s.cols + 3, ldo = s.rows + 5;
    std::normal_distribution<float> dist(0.0f, 1.0f);
    std::vector<float> x(size_t(n * ldx));
    for (auto& v : x) v = dist(rng);
    std::vector<int8_t> q(size_t(n * s.cols));
    std::vector<float> qs(size_t(n * s.cols));
    std::vector<QuantizedVector> xq(n);
    const bool quant = matrix_uses_quantized_activation(t.m);
    for (int i = 0; i < n; i++) {
      xq[size_t(i)] = {q.data() + i * s.cols, qs.data() + i * s.cols, s.cols, matrix_group(t.m)};
      if (quant) ref.quantize(xq[size_t(i)], x.data() + i * ldx);
    }
    std::vector<float> want(size_t(n * ldo), 0.0f), got(size_t(n * ldo), 0.0f);
    for (int i = 0; i < n; i++)
      ref.matvec(want.data() + i * ldo, t.m, x.data() + i * ldx, quant ? &xq[size_t(i)] : nullptr, 0, s.rows);
    k().matmul(got.data(), ldo, t.m, x.data(), ldx, quant ? xq.data() : nullptr, n, 0, s.rows);
    expect_same(want, got, std::string(dtype_name(s.type)) + " " + std::to_string(s.rows) + "x" + std::to_string(s.cols) +
                               ", " + std::to_string(n) + " tokens");
  }
}

// The repacked layouts (Q8_0x8, Q4_0x8) against the reference on the file's layout: matvec over
// whole and partial row ranges (starting inside an 8-row group), matmul with token counts that
// take every pass width, and the embedding lookup. The reference on the repacked bytes must agree
// as well: it is the fallback for partial groups.
TEST_P(SimdKernels, RepackedEqualsReferenceOnFileLayout) {
  const Kernels& ref = reference_kernels();
  const Shape shapes[] = {{DType::Q8_0, 8, 32, 0},   {DType::Q8_0, 40, 288, 0}, {DType::Q8_0, 16, 1056, 0},
                          {DType::Q4_0, 8, 32, 0},   {DType::Q4_0, 40, 288, 0}, {DType::Q4_0, 24, 2048, 0}};
  for (const Shape& s : shapes) {
    std::mt19937 rng(uint32_t(s.rows * 131 + s.cols));
    const RandomMatrix file = random_matrix(s.type, s.rows, s.cols, 0, rng);
    ASSERT_TRUE(repackable(file.m));
    const RandomMatrix packed = test::repacked(file);
    const std::string what = std::string(dtype_name(packed.m.type)) + " " + std::to_string(s.rows) + "x" +
                             std::to_string(s.cols);
    const test::RandomActivation a = test::random_activation(file.m, rng);
    for (const auto& [r0, r1] : {std::pair<int64_t, int64_t>{0, s.rows}, {3, s.rows}, {8, s.rows - 5}}) {
      if (r0 >= r1) continue;
      std::vector<float> want(size_t(r1 - r0)), got(size_t(r1 - r0), NAN), got_ref(size_t(r1 - r0), NAN);
      ref.matvec(want.data(), file.m, a.x.data(), a.quantized(), r0, r1);
      k().matvec(got.data(), packed.m, a.x.data(), a.quantized(), r0, r1);
      ref.matvec(got_ref.data(), packed.m, a.x.data(), a.quantized(), r0, r1);
      const std::string rows = " rows " + std::to_string(r0) + ".." + std::to_string(r1);
      expect_same(want, got, what + rows);
      expect_same(want, got_ref, what + " (reference)" + rows);
    }
    for (int64_t row : {int64_t(0), s.rows - 1, s.rows / 2 + 1}) {
      std::vector<float> want(size_t(s.cols)), got(size_t(s.cols), NAN);
      ref.dequantize_row(want.data(), file.m, row);
      k().dequantize_row(got.data(), packed.m, row);
      expect_same(want, got, what + " dequantized row " + std::to_string(row));
    }
    // 1, 3: singles; 4: one pass of 4; 7: 4 + 3; 8: the AVX-512 pass; 23: 8 + 8 + 4 + 3 (AVX2 4s).
    for (const int n : {1, 3, 4, 7, 8, 23}) {
      std::vector<test::RandomActivation> acts;
      std::vector<QuantizedVector> xq;
      const int64_t ldx = s.cols;
      std::vector<float> x;
      for (int t = 0; t < n; t++) {
        acts.push_back(test::random_activation(file.m, rng));
        x.insert(x.end(), acts.back().x.begin(), acts.back().x.end());
      }
      for (const auto& act : acts) xq.push_back(act.xq);
      const int64_t ldo = s.rows + 3;
      std::vector<float> want(size_t(n * ldo), 0.0f), got(size_t(n * ldo), 0.0f);
      for (int t = 0; t < n; t++) ref.matvec(want.data() + t * ldo, file.m, x.data() + t * ldx, &xq[size_t(t)], 0, s.rows);
      k().matmul(got.data(), ldo, packed.m, x.data(), ldx, xq.data(), n, 0, s.rows);
      expect_same(want, got, what + ", " + std::to_string(n) + " tokens");
    }
  }
}

TEST_P(SimdKernels, AttentionEqualsReferenceBitForBit) {
  const Kernels& ref = reference_kernels();
  std::mt19937 rng(5);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (int head_size : {6, 8, 16, 40, 48, 64, 96, 128}) {
    const int64_t stride = head_size * 3 + 8;  // the kv_dim of a layer holding several heads
    for (int pos : {0, 1, 7, 8, 9, 23, 31, 32, 33, 64, 130, 300}) {
      std::vector<float> q(static_cast<size_t>(head_size)), k(static_cast<size_t>((pos + 1) * stride)), v(k.size());
      for (auto* vec : {&q, &k, &v})
        for (auto& e : *vec) e = dist(rng);
      std::vector<float> want(static_cast<size_t>(head_size)), got(static_cast<size_t>(head_size), NAN);
      std::vector<float> att_want(size_t(pos + 1)), att_got(size_t(pos + 1));
      ref.attention(want.data(), att_want.data(), q.data(), k.data(), v.data(), pos, head_size, stride);
      this->k().attention(got.data(), att_got.data(), q.data(), k.data(), v.data(), pos, head_size, stride);
      expect_same(want, got, "head " + std::to_string(head_size) + " pos " + std::to_string(pos));
      expect_same(att_want, att_got, "scores, head " + std::to_string(head_size) + " pos " + std::to_string(pos));
    }
  }
}

TEST_P(SimdKernels, QuantizeEqualsReferenceBitForBit) {
  const Kernels& ref = reference_kernels();
  std::mt19937 rng(9);
  std::normal_distribution<float> dist(0.0f, 3.0f);
  for (int group : {8, 32, 64, 12}) {
    const int64_t n = group * 37;
    std::vector<float> x(static_cast<size_t>(n));
    for (auto& v : x) v = dist(rng);
    for (int i = 0; i < group; i++) x[size_t(i)] = 0.0f;  // an all-zero group (scale 0)
    // Exact halves after scaling: a group whose max is 127 makes x / s == x.
    for (int i = 0; i < group; i++) x[size_t(group + i)] = i == 0 ? 127.0f : float(i % 9) - 4.5f;
    std::vector<int8_t> qa(x.size()), qb(x.size());
    std::vector<float> sa(x.size()), sb(x.size());
    QuantizedVector a{qa.data(), sa.data(), n, group}, b{qb.data(), sb.data(), n, group};
    ref.quantize(a, x.data());
    k().quantize(b, x.data());
    ASSERT_EQ(qa, qb) << "group " << group;
    // With sums requested, both also write each group's sum of q.
    std::vector<int32_t> suma(size_t(n / group), -1), sumb(size_t(n / group), -2);
    a.sums = suma.data(), b.sums = sumb.data();
    ref.quantize(a, x.data());
    k().quantize(b, x.data());
    for (int64_t g = 0; g < n / group; g++) {
      int32_t want = 0;
      for (int i = 0; i < group; i++) want += qa[size_t(g * group + i)];
      ASSERT_EQ(suma[size_t(g)], want) << "reference, group " << g;
      ASSERT_EQ(sumb[size_t(g)], want) << "group " << g;
    }
    ASSERT_EQ(std::memcmp(sa.data(), sb.data(), size_t(n / group) * 4), 0) << "group " << group;
  }
}

// The bandwidth probe's sum: reordered float additions, so a relative tolerance.
TEST_P(SimdKernels, StreamSumWithinTolerance) {
  std::vector<float> v(100003);
  double exact = 0;
  for (size_t i = 0; i < v.size(); i++) exact += v[i] = float(i % 97) * 0.25f;
  EXPECT_NEAR(stream_sum(GetParam(), v.data(), v.size()), exact, exact * 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Isa, SimdKernels, ::testing::ValuesIn(kSimdIsas),
                         [](const auto& info) { return std::string(isa_name(info.param)); });

TEST(Dispatch, BestIsaIsSupported) {
  EXPECT_TRUE(isa_supported(best_isa()));
  EXPECT_STREQ(kernels_for(Isa::Scalar).name, "scalar");
}

}  // namespace
}  // namespace bf

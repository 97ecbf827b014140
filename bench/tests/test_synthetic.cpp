// Synthetic GGUF models: loadable by the normal loader, deterministic, of the requested shape and type.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>

#include "bench/synthetic.h"
#include "engine/error.h"
#include "engine/model.h"
#include "engine/transformer.h"
#include "kernels/dispatch.h"

namespace bf::bench {
namespace {

std::string temp_path(const std::string& tag) {
  const char* tmp = std::getenv("TMPDIR");
  return std::string(tmp && *tmp ? tmp : "/tmp") + "/bf-synth-test-" + std::to_string(getpid()) + "-" + tag + ".gguf";
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Small but with every structural feature: GQA, a separate classifier, hidden not a multiple of 64.
const ModelShape kTiny{"tiny", 64, 96, 2, 4, 2, 300, 32, false};

class Synthetic : public ::testing::TestWithParam<DType> {};

TEST_P(Synthetic, LoadsWithTheRequestedShapeAndRuns) {
  const std::string path = temp_path(dtype_name(GetParam()));
  const uint64_t size = write_synthetic_gguf(path, kTiny, GetParam(), 7);
  {
    const std::unique_ptr<Model> m = load_model(path);
    EXPECT_EQ(m->file.size(), size);
    const Config& c = m->config;
    EXPECT_EQ(c.dim, 64);
    EXPECT_EQ(c.hidden_dim, 96);
    EXPECT_EQ(c.n_layers, 2);
    EXPECT_EQ(c.n_heads, 4);
    EXPECT_EQ(c.n_kv_heads, 2);
    EXPECT_EQ(c.vocab_size, 300);
    EXPECT_EQ(c.seq_len, 32);
    EXPECT_EQ(m->weights.layers[1].w2.type, GetParam());
    EXPECT_NE(m->weights.classifier.data, m->weights.token_embedding.data);
    Transformer t(*m, kernels_for(best_isa()), 2);
    const int tokens[5] = {1, 5, 299, 42, 7};
    t.prefill(tokens, 4, 0);
    const float* logits = t.forward(tokens[4], 4);
    for (int i = 0; i < c.vocab_size; i++) ASSERT_TRUE(std::isfinite(logits[i])) << i;
  }
  std::remove(path.c_str());
}

TEST_P(Synthetic, SameSeedSameBytes) {
  const std::string a = temp_path("a"), b = temp_path("b");
  write_synthetic_gguf(a, kTiny, GetParam(), 3);
  write_synthetic_gguf(b, kTiny, GetParam(), 3);
  EXPECT_TRUE(slurp(a) == slurp(b));
  std::remove(a.c_str());
  std::remove(b.c_str());
}

INSTANTIATE_TEST_SUITE_P(Types, Synthetic, ::testing::Values(DType::F32, DType::F16, DType::Q8_0, DType::Q4_0),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

TEST(Shapes, RealShapesAreKnown) {
  const ModelShape& s = find_shape("--model-shape", "tinyllama-1.1b");
  EXPECT_EQ(s.dim, 2048);
  EXPECT_EQ(s.hidden_dim, 5632);
  EXPECT_EQ(s.n_layers, 22);
  EXPECT_EQ(s.n_kv_heads, 4);
  EXPECT_EQ(find_shape("--model-shape", "stories110M").n_layers, 12);
  EXPECT_THROW(find_shape("--model-shape", "gpt5"), Error);
}

}  // namespace
}  // namespace bf::bench

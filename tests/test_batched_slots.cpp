// Several sequences decoded together through Transformer::forward_batch (serve's slots) must give,
// row for row, the logits each gets alone from forward(): on the real stories260K models and on
// synthetic models of every weight type (GQA, a separate classifier), for every ISA this CPU has.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <functional>
#include <cstring>
#include <string>
#include <vector>

#include "bench/synthetic.h"
#include "engine/model.h"
#include "engine/transformer.h"
#include "kernels/dispatch.h"
#include "tests/stories260k_files.h"

namespace bf {
namespace {


// Four sequences over three slots: staggered starts, prompts of several tokens run in the same
// batch as other slots' decode tokens (their logits not asked for but the last one's), and slot 2
// reused from position 0 by a fourth sequence once its first is done.
void expect_batched_slots_match_forward(const Model& m, const Kernels& k, int threads, const char* what) {
  const int vocab = m.config.vocab_size;
  struct Seq {
    int slot, start, prompt, length;
    std::vector<int> tokens;
    std::vector<std::vector<float>> want;  // logits after each position, alone
    int fed = 0;
  };
  std::vector<Seq> seqs = {{0, 0, 5, 20, {}, {}}, {1, 2, 9, 26, {}, {}}, {2, 4, 1, 8, {}, {}}, {2, 0, 3, 10, {}, {}}};
  for (size_t s = 0; s < seqs.size(); s++) {
    Seq& q = seqs[s];
    ASSERT_LE(q.length, m.config.seq_len) << what;
    for (int i = 0; i < q.length; i++) q.tokens.push_back(int((i * 31 + s * 7 + 3) % size_t(vocab)));
    Transformer alone(m, k, 1);
    for (int i = 0; i < q.length; i++) {
      const float* l = alone.forward(q.tokens[size_t(i)], i);
      q.want.emplace_back(l, l + vocab);
    }
  }
  Transformer t(m, k, threads, 0, 3);
  ASSERT_EQ(t.slots(), 3);
  seqs[3].start = -1;  // starts when sequence 2 ends
  for (int step = 0; step < 64; step++) {
    std::vector<BatchToken> batch;
    std::vector<std::pair<size_t, int>> rows;  // (sequence, position) of each logits row
    for (size_t s = 0; s < seqs.size(); s++) {
      Seq& q = seqs[s];
      if (q.start < 0 || step < q.start || q.fed == q.length) continue;
      const int n = q.fed == 0 ? q.prompt : 1;
      for (int i = 0; i < n; i++, q.fed++) {
        const bool logits = i == n - 1;
        batch.push_back({q.tokens[size_t(q.fed)], q.fed, q.slot, logits});
        if (logits) rows.emplace_back(s, q.fed);
      }
      if (s == 2 && q.fed == q.length) seqs[3].start = step + 1;
    }
    if (batch.empty()) break;
    const float* logits = t.forward_batch(batch.data(), int(batch.size()));
    for (size_t r = 0; r < rows.size(); r++) {
      const auto [s, pos] = rows[r];
      ASSERT_EQ(std::memcmp(logits + r * size_t(vocab), seqs[s].want[size_t(pos)].data(), size_t(vocab) * 4), 0)
          << what << ": sequence " << s << " position " << pos << " at step " << step << " (batch of " << batch.size()
          << ")";
    }
  }
  for (const Seq& q : seqs) ASSERT_EQ(q.fed, q.length) << what;
}


// Each ISA this CPU has (the others skipped, visibly).
void for_each_isa(const std::string& what, const std::function<void(Isa)>& f) {
  for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::AvxVnni}) {
    if (!isa_supported(isa)) {
      std::printf("[  SKIPPED ] %s: this CPU has no %s\n", what.c_str(), isa_name(isa));
      continue;
    }
    f(isa);
  }
}

class RealModels : public ::testing::TestWithParam<const char*> {};

TEST_P(RealModels, SlotsDecodedAsOneBatchGiveEachSlotsForwardLogits) {
  const std::unique_ptr<Model> m = load_model(std::string(BF_SHARED_MODELS) + "/" + GetParam());
  for_each_isa(GetParam(), [&](Isa isa) {
    for (int threads : {1, 2})
      expect_batched_slots_match_forward(
          *m, kernels_for(isa), threads,
          (std::string(GetParam()) + " " + isa_name(isa) + " threads " + std::to_string(threads)).c_str());
  });
}

INSTANTIATE_TEST_SUITE_P(Stories260K, RealModels, testing::stories260k_files(), testing::file_test_name);

class SyntheticTypes : public ::testing::TestWithParam<DType> {};

TEST_P(SyntheticTypes, SlotsDecodedAsOneBatchGiveEachSlotsForwardLogits) {
  const char* tmp = std::getenv("TMPDIR");
  const std::string path = std::string(tmp && *tmp ? tmp : "/tmp") + "/bf-slots-test-" + std::to_string(getpid()) + "-" +
                           dtype_name(GetParam()) + ".gguf";
  const bench::ModelShape tiny{"tiny", 64, 96, 2, 4, 2, 300, 32, false};  // GQA, hidden not a multiple of 64
  bench::write_synthetic_gguf(path, tiny, GetParam(), 11);
  {
    const std::unique_ptr<Model> m = load_model(path);
    for_each_isa(dtype_name(GetParam()), [&](Isa isa) {
      expect_batched_slots_match_forward(*m, kernels_for(isa), 2,
                                         (std::string(dtype_name(GetParam())) + " " + isa_name(isa)).c_str());
    });
  }
  std::remove(path.c_str());
}

// Repacked weights (repack_weights: Q8_0x8, Q4_0x8) against the file's layout under the scalar
// reference: forward's logits at every position equal, for every ISA, and the batched slots agree
// with forward on the repacked model. Two shapes: a separate classifier with a vocabulary that
// cannot be repacked (300 rows), and an embedding shared with the classifier that can (304).
TEST_P(SyntheticTypes, RepackedWeightsGiveTheFileLayoutsLogits) {
  const char* tmp = std::getenv("TMPDIR");
  for (const bench::ModelShape& shape : {bench::ModelShape{"separate", 64, 96, 2, 4, 2, 300, 32, false},
                                         bench::ModelShape{"shared", 64, 160, 2, 4, 4, 304, 32, true}}) {
    const std::string what = std::string(dtype_name(GetParam())) + " " + shape.name;
    const std::string path = std::string(tmp && *tmp ? tmp : "/tmp") + "/bf-repack-test-" + std::to_string(getpid()) +
                             "-" + dtype_name(GetParam()) + "-" + shape.name + ".gguf";
    bench::write_synthetic_gguf(path, shape, GetParam(), 5);
    {
      const std::unique_ptr<Model> file = load_model(path), packed = load_model(path);
      const bool quantized = GetParam() == DType::Q8_0 || GetParam() == DType::Q4_0;
      ASSERT_EQ(repack_weights(*packed) > 0, quantized) << what;
      if (quantized) {
        EXPECT_EQ(packed->weights.layers[0].w1.type, repacked_dtype(GetParam())) << what;
        EXPECT_EQ(packed->weights.token_embedding.type == GetParam(), shape.vocab_size % 8 != 0) << what;
        EXPECT_EQ(packed->weights.classifier.data == packed->weights.token_embedding.data, shape.shared_classifier) << what;
      }
      const int vocab = shape.vocab_size;
      Transformer reference(*file, reference_kernels(), 1);
      std::vector<std::vector<float>> want;
      for (int pos = 0; pos < shape.seq_len; pos++) {
        const float* l = reference.forward((pos * 37 + 1) % vocab, pos);
        want.emplace_back(l, l + vocab);
      }
      for_each_isa(what, [&](Isa isa) {
        Transformer t(*packed, kernels_for(isa), 2);
        for (int pos = 0; pos < shape.seq_len; pos++)
          ASSERT_EQ(std::memcmp(t.forward((pos * 37 + 1) % vocab, pos), want[size_t(pos)].data(), size_t(vocab) * 4), 0)
              << what << " " << isa_name(isa) << " position " << pos;
        expect_batched_slots_match_forward(*packed, kernels_for(isa), 2, (what + " repacked " + isa_name(isa)).c_str());
      });
    }
    std::remove(path.c_str());
  }
}

INSTANTIATE_TEST_SUITE_P(Types, SyntheticTypes, ::testing::Values(DType::F32, DType::F16, DType::Q8_0, DType::Q4_0),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

}  // namespace
}  // namespace bf

// The thread pool, and the transformer's threaded and batched paths against token-by-token decode
// on the real stories260K models: logits must be bit-identical for every ISA and thread count.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "engine/model.h"
#include "engine/threadpool.h"
#include "engine/transformer.h"
#include "kernels/dispatch.h"
#include "tests/stories260k_files.h"

namespace bf {
namespace {

TEST(ThreadPool, OneThreadRunsInlineWithoutWorkers) {
  ThreadPool pool(1);
  EXPECT_EQ(pool.size(), 1);
  struct Ctx {
    std::thread::id caller;
    int calls = 0;
    bool inline_only = true;
  } ctx{std::this_thread::get_id()};
  pool.run(
      [](void* p, int task, int thread) {
        auto& c = *static_cast<Ctx*>(p);
        c.inline_only = c.inline_only && thread == 0 && std::this_thread::get_id() == c.caller && task == c.calls;
        c.calls++;
      },
      &ctx, 5);
  EXPECT_TRUE(ctx.inline_only);
  EXPECT_EQ(ctx.calls, 5);
}

TEST(ThreadPool, EveryTaskRunsOncePerCallManyTimes) {
  for (int threads : {2, 3, 5}) {
    ThreadPool pool(threads);
    struct Ctx {
      std::vector<std::atomic<int>> hits;
      std::atomic<bool> bad_thread{false};
      int threads;
    } ctx{std::vector<std::atomic<int>>(7), {}, threads};
    for (int call = 0; call < 2000; call++) {
      pool.run(
          [](void* p, int task, int thread) {
            auto& c = *static_cast<Ctx*>(p);
            c.hits[size_t(task)]++;
            if (thread < 0 || thread >= c.threads) c.bad_thread = true;
          },
          &ctx, 1 + call % 7);
    }
    int total = 0;
    for (auto& h : ctx.hits) total += h.load();
    int want = 0;
    for (int call = 0; call < 2000; call++) want += 1 + call % 7;
    EXPECT_EQ(total, want);
    EXPECT_EQ(ctx.hits[0].load(), 2000);
    EXPECT_FALSE(ctx.bad_thread.load());
  }
}

// Logits after feeding `tokens` one by one with the reference kernels on one thread.
std::vector<float> reference_logits(const Model& m, const std::vector<int>& tokens) {
  Transformer t(m, reference_kernels(), 1);
  float* logits = nullptr;
  for (size_t i = 0; i < tokens.size(); i++) logits = t.forward(tokens[i], int(i));
  return {logits, logits + m.config.vocab_size};
}

class Models : public ::testing::TestWithParam<const char*> {};

TEST_P(Models, EveryIsaThreadCountAndPrefillGivesIdenticalLogits) {
  const std::unique_ptr<Model> m = load_model(std::string(BF_SHARED_MODELS) + "/" + GetParam());
  std::vector<int> tokens;
  for (int i = 0; i < 70; i++) tokens.push_back((i * 37 + 11) % m->config.vocab_size);  // > one batch of 64
  const std::vector<float> want = reference_logits(*m, tokens);
  for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::AvxVnni}) {
    if (!isa_supported(isa)) continue;
    for (int threads : {1, 2}) {
      for (bool batched : {false, true}) {
        Transformer t(*m, kernels_for(isa), threads);
        const int last = int(tokens.size()) - 1;
        if (batched) {
          t.prefill(tokens.data(), last, 0);
        } else {
          for (int i = 0; i < last; i++) t.forward(tokens[size_t(i)], i);
        }
        const float* got = t.forward(tokens[size_t(last)], last);
        ASSERT_EQ(std::memcmp(got, want.data(), want.size() * 4), 0)
            << GetParam() << " isa " << isa_name(isa) << " threads " << threads << (batched ? " prefill" : "");
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Stories260K, Models, testing::stories260k_files(), testing::file_test_name);

}  // namespace
}  // namespace bf

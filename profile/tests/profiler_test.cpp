#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "engine/model.h"
#include "engine/transformer.h"
#include "kernels/cycles.h"
#include "profile/profiler.h"
#include "profile/site_profiler.h"

namespace bf::prof {
namespace {

TEST(Profiler, CalibratedFrequencyIsPlausible) {
  const double hz = cycles_per_second();
  EXPECT_GT(hz, 1e8);
  EXPECT_LT(hz, 1e10);
}

// Variant names as the JIT gives them (its tiers); the profiler only numbers them.
const std::vector<std::string> kTiers = {"aot", "interp", "O0", "O1", "O2", "O3"};
constexpr uint8_t kAot = 0, kO2 = 4, kO3 = 5;

TEST(Profiler, RecordsCountsExtremesAndTiers) {
  Profiler p({"a", "b"}, kTiers);
  p.record(0, 100, 10, 40, kAot);
  p.record(0, 300, 10, 40, kO2);
  p.record(0, 200, 10, 40, kO2);
  const SiteStats& s = p.sites()[0];
  EXPECT_EQ(s.calls, 3u);
  EXPECT_EQ(s.cycles, 600u);
  EXPECT_EQ(s.min_cycles, 100u);
  EXPECT_EQ(s.max_cycles, 300u);
  EXPECT_EQ(s.macs, 30u);
  EXPECT_EQ(s.bytes, 120u);
  EXPECT_EQ(s.variant_calls[kAot], 1u);
  EXPECT_EQ(s.variant_calls[kO2], 2u);
  EXPECT_EQ(s.variant_cycles[kO2], 500u);
  EXPECT_EQ(p.sites()[1].calls, 0u);
  EXPECT_EQ(p.total_calls(), 3u);
}

TEST(Profiler, WritesJson) {
  Profiler p({"wq"}, kTiers);
  p.record(0, 1000, 4096, 16384, kO3);
  const std::string path = ::testing::TempDir() + "/profile.json";
  FILE* f = std::fopen(path.c_str(), "w");
  ASSERT_NE(f, nullptr);
  p.write_json(f, 0.5);
  ASSERT_EQ(std::fclose(f), 0);
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string j = ss.str();
  EXPECT_NE(j.find("\"site\": \"wq\""), std::string::npos);
  EXPECT_NE(j.find("\"macs\": 4096"), std::string::npos);
  EXPECT_NE(j.find("\"O3\": {\"calls\": 1, \"cycles\": 1000}"), std::string::npos);
  EXPECT_EQ(j.back(), '\n');
}

TEST(SiteProfiler, CountsEverySiteOfTheForwardPass) {
  const std::unique_ptr<Model> model = load_model(BF_SHARED_MODELS "/stories260K.bin");
  Transformer t(*model, reference_kernels());
  SiteProfiler sp;
  t.set_matvec_observer(&sp);
  constexpr int kTokens = 3;
  for (int pos = 0; pos < kTokens; pos++) t.forward(1, pos);
  const Config& c = model->config;
  const auto& sites = sp.profiler().sites();
  for (size_t s = 0; s < kSiteCount; s++) {
    const uint64_t expect = Site(s) == Site::Classifier ? kTokens : uint64_t(kTokens) * c.n_layers;
    EXPECT_EQ(sites[s].calls, expect) << site_name(Site(s));
    EXPECT_EQ(sites[s].variant_calls[kAot], expect);
    EXPECT_GT(sites[s].cycles, 0u);
  }
  EXPECT_EQ(sites[size_t(Site::W1)].macs, uint64_t(kTokens) * c.n_layers * c.hidden_dim * c.dim);
}

}  // namespace
}  // namespace bf::prof

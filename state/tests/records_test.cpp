// Records round-trip exactly, refuse any value that does not decode exactly, and convergence
// follows its rule: K consecutive runs in which no site moved and none appeared.
#include "state/records.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>

#include "engine/build_id.h"
#include "engine/error.h"

namespace bf::state {
namespace {

TEST(Records, ModelStateRoundTripsAndRefusesEveryTruncation) {
  ModelState m;
  m.description = "gguf v3 dim=64";
  m.file_name = "stories260K.gguf";
  m.runs = 3;
  m.stable_runs = 1;
  m.sites = {{"wq", 100, 5000, "O3", "q8_0 64x64 znver4"}, {"qkv", 7, 90, "O3", ""}};
  m.cpu = "znver4 +avx,+avx2";
  m.cpuid = "1:2:3:4:5:6:7:8:9";
  const std::vector<uint8_t> v = encode(m);
  const ModelState back = decode_model_state(v, "test");
  EXPECT_EQ(back.description, m.description);
  EXPECT_EQ(back.file_name, m.file_name);
  EXPECT_EQ(back.runs, 3u);
  EXPECT_EQ(back.stable_runs, 1u);
  EXPECT_EQ(back.sites, m.sites);
  EXPECT_EQ(back.cpu, m.cpu);
  EXPECT_EQ(back.cpuid, m.cpuid);
  for (size_t n = 0; n < v.size(); n++)
    EXPECT_THROW(decode_model_state(std::vector<uint8_t>(v.begin(), v.begin() + long(n)), "test"), Error) << n;
  std::vector<uint8_t> longer = v;
  longer.push_back(0);
  EXPECT_THROW(decode_model_state(longer, "test"), Error);
  std::vector<uint8_t> huge = v;
  huge[4] = 0xff, huge[5] = 0xff, huge[6] = 0xff, huge[7] = 0x7f;  // description length
  EXPECT_THROW(decode_model_state(huge, "test"), Error);
}

TEST(Records, RunRecordRoundTripsAndPrintsTheReportKeys) {
  RunRecord r{2, "a \"model\".bin", 0, 9, 0.125, 0, 321.5, 0, true, 4096};
  const RunRecord back = decode_run(encode(r), "test");
  EXPECT_EQ(run_json(back),
            "{\"run\": 2, \"model\": \"a \\\"model\\\".bin\", \"compiles\": 0, \"loaded\": 9, "
            "\"time_to_first_token_s\": 0.1250, \"time_to_top_tier_s\": 0.0000, \"decode_tok_s\": 321.50, "
            "\"compile_ms\": 0.00, \"converged\": true, \"state_bytes\": 4096}");
}

TEST(Records, ConvergedAfterTwoRunsWithoutMovement) {
  ModelState m;
  const std::vector<SiteRecord> learned = {{"wq", 10, 100, "O3", "s"}, {"w2", 10, 100, "O3", "s"}};
  EXPECT_EQ(record_run(m, {{"wq", 10, 100, "O1", "s"}}), "new site wq");  // run 1 learns
  EXPECT_FALSE(converged(m));
  EXPECT_EQ(record_run(m, learned), "wq O1 -> O3");  // run 2 still tiers up, and w2 is new
  EXPECT_EQ(m.stable_runs, 0u);
  EXPECT_EQ(record_run(m, learned), "");
  EXPECT_FALSE(converged(m));
  EXPECT_EQ(record_run(m, learned), "");
  EXPECT_TRUE(converged(m));
  EXPECT_EQ(m.sites[0].calls, 40u);
  // A new specialization (another CPU, say) starts over.
  EXPECT_NE(record_run(m, {{"wq", 10, 100, "O3", "other"}}), "");
  EXPECT_FALSE(converged(m));
}

TEST(Records, DefaultStatePathFollowsTheEnvironment) {
  setenv("BAREFLOW_STATE", "/x/s.bfs", 1);
  EXPECT_EQ(default_state_path(), "/x/s.bfs");
  unsetenv("BAREFLOW_STATE");
  setenv("XDG_CACHE_HOME", "/cache", 1);
  EXPECT_EQ(default_state_path(), "/cache/bareflow/state.bfs");
  unsetenv("XDG_CACHE_HOME");
  setenv("HOME", "/home/u", 1);
  EXPECT_EQ(default_state_path(), "/home/u/.cache/bareflow/state.bfs");
}

TEST(BuildId, IsTheExecutablesGnuBuildId) {
  // The linker's note, as readelf shows it (Debian's toolchain writes one by default).
  const std::string& id = engine_build_id();
  ASSERT_EQ(id.size(), 40u) << "no NT_GNU_BUILD_ID in " << id;
  const std::string cmd = "readelf -n /proc/" + std::to_string(getpid()) + "/exe | grep -q 'Build ID: " + id + "'";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << id;
}

}  // namespace
}  // namespace bf::state

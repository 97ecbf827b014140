// The JIT against the reference kernels: random awkward shapes at every tier, tier-up of a real
// model with bit-identical logits, and rejection of a deliberately miscompiled variant.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <random>

#include "engine/model.h"
#include "jit/compiler.h"
#include "jit/runtime.h"
#include "jit/test_hooks.h"
#include "kernels/dispatch.h"
#include "kernels/tests/random_matrix.h"

namespace bf::jit {
namespace {

using test::RandomMatrix;
using test::random_matrix;

struct Shape {
  DType type;
  int64_t rows, cols;
  int32_t group;
};

// Odd sizes, blocks that cross rows (dequantized path), one row, one column.
const Shape kShapes[] = {
    {DType::F32, 1, 1, 0},     {DType::F32, 3, 7, 0},      {DType::F32, 17, 33, 0},   {DType::F32, 37, 172, 0},
    {DType::F16, 5, 13, 0},    {DType::F16, 9, 64, 0},     {DType::Q8_0, 1, 32, 0},   {DType::Q8_0, 37, 96, 0},
    {DType::Q8_0, 8, 172, 0},  {DType::Q8_0, 2, 48, 0},    {DType::Q4_0, 5, 64, 0},   {DType::Q4_0, 8, 172, 0},
    {DType::Q8_G, 7, 24, 8},   {DType::Q8_G, 3, 64, 32},   {DType::Q8_G, 2, 12, 8},
};

class Kernels : public ::testing::TestWithParam<Tier> {
 protected:
  static void SetUpTestSuite() {
    llvm::Expected<std::unique_ptr<Compiler>> c = Compiler::create();
    ASSERT_TRUE(bool(c)) << llvm::toString(c.takeError());
    compiler_ = std::move(*c);
  }
  static void TearDownTestSuite() { compiler_.reset(); }
  static std::unique_ptr<Compiler> compiler_;
};
std::unique_ptr<Compiler> Kernels::compiler_;

TEST_P(Kernels, EqualTheReferenceBitForBitOnAwkwardShapes) {
  const Tier tier = GetParam();
  std::mt19937 rng(1234);
  int id = 0;
  for (const Shape& sh : kShapes) {
    SCOPED_TRACE(std::string(dtype_name(sh.type)) + " " + std::to_string(sh.rows) + "x" + std::to_string(sh.cols));
    const RandomMatrix t = random_matrix(sh.type, sh.rows, sh.cols, sh.group, rng);
    const test::RandomActivation a = test::random_activation(t.m, rng);
    const std::vector<float>& x = a.x;
    const QuantizedVector* xqp = a.quantized();

    llvm::Expected<Variant> v =
        compiler_->compile(Spec{t.m}, tier, "k" + std::to_string(int(tier)) + "_" + std::to_string(id++));
    ASSERT_TRUE(bool(v)) << llvm::toString(v.takeError());
    EXPECT_EQ(v->tier, tier);
    if (tier != Tier::Interp) {
      EXPECT_GT(v->code_bytes, 0u);
    }
    std::vector<float> want(size_t(sh.rows)), got(size_t(sh.rows), -1.0f);
    reference_kernels().matvec(want.data(), t.m, x.data(), xqp, 0, sh.rows);
    v->fn(got.data(), t.m, x.data(), xqp, 0, sh.rows);
    EXPECT_EQ(0, std::memcmp(want.data(), got.data(), want.size() * 4));
    // A sub-range, as a thread of a pool would call it.
    const int64_t r0 = sh.rows / 3, r1 = sh.rows - sh.rows / 4;
    std::vector<float> part(size_t(r1 - r0) + 1, -7.0f);
    v->fn(part.data(), t.m, x.data(), xqp, r0, r1);
    EXPECT_EQ(0, std::memcmp(part.data(), want.data() + r0, size_t(r1 - r0) * 4));
    EXPECT_EQ(part.back(), -7.0f) << "wrote past r1";
  }
}

TEST_F(Kernels, ReassociatedVariantsStayWithinTolerance) {
  std::mt19937 rng(99);
  int id = 0;
  for (const Shape& sh : kShapes) {
    SCOPED_TRACE(std::string(dtype_name(sh.type)) + " " + std::to_string(sh.rows) + "x" + std::to_string(sh.cols));
    const RandomMatrix t = random_matrix(sh.type, sh.rows, sh.cols, sh.group, rng);
    const test::RandomActivation a = test::random_activation(t.m, rng);
    const std::vector<float>& x = a.x;
    const QuantizedVector* xqp = a.quantized();
    llvm::Expected<Variant> v = compiler_->compile(Spec{t.m}, Tier::O3, "reassoc_" + std::to_string(id++), {.reassoc = true});
    ASSERT_TRUE(bool(v)) << llvm::toString(v.takeError());
    std::vector<float> want(size_t(sh.rows)), got(size_t(sh.rows));
    reference_kernels().matvec(want.data(), t.m, x.data(), xqp, 0, sh.rows);
    v->fn(got.data(), t.m, x.data(), xqp, 0, sh.rows);
    float largest = 0;
    for (const float w : want) largest = std::max(largest, std::fabs(w));
    for (int64_t r = 0; r < sh.rows; r++) EXPECT_NEAR(got[size_t(r)], want[size_t(r)], kReassocTolerance * largest);
  }
}

// Fused groups: three matrices of one type and width stacked (Qkv), or two of one shape with
// SwiGLU applied (W13); rows not multiples of 8 so that ranges cross the matrices mid-block.
TEST_P(Kernels, FusedGroupsEqualTheReferenceBitForBit) {
  const Tier tier = GetParam();
  if (tier == Tier::Interp) {  // compiled tiers only: the runtime fuses at the policy's top tier
    std::mt19937 rng(1);
    RandomMatrix m = random_matrix(DType::F32, 8, 8, 0, rng);
    llvm::Expected<Variant> v = compiler_->compile(Spec{.W = m.m, .fused = true, .fusion = Fusion::Qkv, .rows2 = 8, .rows3 = 8}, tier,
                                                   "fused_interp");
    ASSERT_FALSE(bool(v));
    EXPECT_EQ(llvm::toString(v.takeError()), "fused kernels are compiled tiers only");
    return;
  }
  struct Group {
    DType type;
    int64_t rows[3], cols;
    int32_t group;
  };
  const Group groups[] = {
      {DType::F32, {17, 9, 9}, 33, 0},   {DType::F16, {16, 8, 8}, 64, 0},  {DType::Q8_0, {37, 11, 11}, 96, 0},
      {DType::Q8_0, {40, 24, 24}, 64, 0}, {DType::Q4_0, {21, 5, 5}, 64, 0}, {DType::Q8_G, {7, 3, 3}, 24, 8},
  };
  std::mt19937 rng(4321);
  int id = 0;
  for (const Fusion f : {Fusion::Qkv, Fusion::W13}) {
    for (const Group& g : groups) {
      const int n = f == Fusion::Qkv ? 3 : 2;
      SCOPED_TRACE(std::string(fusion_name(f)) + " " + dtype_name(g.type) + " x" + std::to_string(g.cols));
      RandomMatrix m[3];
      const Matrix* W[3] = {};
      for (int i = 0; i < n; i++) {
        m[i] = random_matrix(g.type, f == Fusion::Qkv ? g.rows[i] : g.rows[0], g.cols, g.group, rng);
        W[i] = &m[i].m;
      }
      const test::RandomActivation a = test::random_activation(m[0].m, rng);
      const QuantizedVector* xqp = a.quantized();
      const Spec spec{.W = m[0].m, .fused = true, .fusion = f, .rows2 = W[1]->rows, .rows3 = n > 2 ? W[2]->rows : 0};
      llvm::Expected<Variant> v = compiler_->compile(spec, tier, "fused_" + std::to_string(id++));
      ASSERT_TRUE(bool(v)) << llvm::toString(v.takeError());
      ASSERT_NE(v->fused, nullptr);
      // The reference: separate matvecs (and swiglu for W13), stacked as the fused row space.
      std::vector<float> want[3];
      for (int i = 0; i < n; i++) {
        want[i].resize(size_t(W[i]->rows));
        reference_kernels().matvec(want[i].data(), *W[i], a.x.data(), xqp, 0, W[i]->rows);
      }
      const int outs = f == Fusion::W13 ? 1 : n;
      if (f == Fusion::W13) reference_kernels().swiglu(want[0].data(), want[1].data(), int(W[0]->rows));
      std::vector<float> stacked;
      for (int i = 0; i < outs; i++) stacked.insert(stacked.end(), want[i].begin(), want[i].end());
      const int64_t total = int64_t(stacked.size());
      // Every range [r0, r1) over a coarse grid: inside one matrix, across two, across all three.
      for (int64_t r0 = 0; r0 < total; r0 += 5)
        for (int64_t r1 = r0 + 1; r1 <= total; r1 += 7) {
          std::vector<float> got[3];
          float* out[3] = {};
          for (int i = 0; i < outs; i++) {
            got[i].assign(want[i].size(), -7.0f);
            out[i] = got[i].data();
          }
          v->fused(out, W, a.x.data(), xqp, r0, r1);
          int64_t r = 0;
          for (int i = 0; i < outs; i++)
            for (const float g : got[i]) {
              if (r >= r0 && r < r1) {
                ASSERT_EQ(0, std::memcmp(&g, &stacked[size_t(r)], 4)) << "row " << r << " of [" << r0 << ", " << r1 << ")";
              } else {
                ASSERT_EQ(g, -7.0f) << "row " << r << " written outside [" << r0 << ", " << r1 << ")";
              }
              r++;
            }
        }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllTiers, Kernels, ::testing::Values(Tier::Interp, Tier::O0, Tier::O1, Tier::O2, Tier::O3),
                         [](const ::testing::TestParamInfo<Tier>& i) { return std::string(tier_name(i.param)); });

// The kernel family follows the CPU: this host's (the AOT dispatch's choice), the reference for the
// interpreter, and AVX-512 + VNNI for a CPU that has them. That family cannot run on hosts without
// AVX-512 (this one), so its code is generated for znver4 and not run: a change that breaks its code
// generation fails here; on an AVX-512 host the tests above also run it against the reference.
TEST(Compiler, PicksTheKernelFamilyOfTheTargetCpu) {
  std::mt19937 rng(3);
  const RandomMatrix q8 = random_matrix(DType::Q8_0, 16, 64, 0, rng);
  llvm::Expected<std::unique_ptr<Compiler>> host = Compiler::create();
  ASSERT_TRUE(bool(host)) << llvm::toString(host.takeError());
  const bool avx2 = (*host)->features().find("+avx2") != std::string::npos;
  const bool avx512 = (*host)->features().find("+avx512vnni") != std::string::npos;
  const bool avxvnni = (*host)->features().find("+avxvnni") != std::string::npos;
  llvm::Expected<Variant> v = (*host)->compile(Spec{q8.m}, Tier::O3, "family_host");
  ASSERT_TRUE(bool(v)) << llvm::toString(v.takeError());
  EXPECT_STREQ(v->family, avx512 ? "avx512" : avxvnni && avx2 ? "avxvnni" : avx2 ? "avx2" : "reference");
  v = (*host)->compile(Spec{q8.m}, Tier::Interp, "family_interp");
  ASSERT_TRUE(bool(v)) << llvm::toString(v.takeError());
  EXPECT_STREQ(v->family, "reference");

  llvm::Expected<std::unique_ptr<Compiler>> zen4 =
      Compiler::create("znver4", "+avx2,+fma,+f16c,+avx512f,+avx512bw,+avx512vl,+avx512dq,+avx512vnni");
  ASSERT_TRUE(bool(zen4)) << llvm::toString(zen4.takeError());
  int id = 0;
  for (const Shape& sh : {Shape{DType::F32, 16, 40, 0}, Shape{DType::F16, 16, 64, 0}, Shape{DType::Q8_0, 24, 96, 0},
                          Shape{DType::Q4_0, 16, 64, 0}, Shape{DType::Q8_G, 16, 64, 32}}) {
    SCOPED_TRACE(dtype_name(sh.type));
    const RandomMatrix t = random_matrix(sh.type, sh.rows, sh.cols, sh.group, rng);
    for (const Tier tier : {Tier::O0, Tier::O3}) {
      for (int kind = 0; kind < 3; kind++) {
        const Spec spec{.W = t.m,
                        .fused = kind > 0,
                        .fusion = kind == 2 ? Fusion::W13 : Fusion::Qkv,
                        .rows2 = sh.rows,
                        .rows3 = kind == 1 ? sh.rows : 0};
        llvm::Expected<Variant> z = (*zen4)->compile(spec, tier, "zen4_" + std::to_string(id++));
        ASSERT_TRUE(bool(z)) << llvm::toString(z.takeError());
        EXPECT_STREQ(z->family, "avx512");
        EXPECT_GT(z->code_bytes, 0u);
      }
    }
  }
}

// The AVX-VNNI family (VEX vpdpbusd, no AVX-512), as a CPU with AVX-VNNI and without AVX-512 gets it:
// generated on every host, run against the reference where this CPU has AVX-VNNI, on the int8
// types in the file and repacked layouts.
TEST(Compiler, AvxVnniFamilyEqualsTheReferenceBitForBit) {
  llvm::Expected<std::unique_ptr<Compiler>> c = Compiler::create("alderlake", "+avx2,+fma,+f16c,+avxvnni");
  ASSERT_TRUE(bool(c)) << llvm::toString(c.takeError());
  const bool runs = isa_supported(Isa::AvxVnni);
  std::mt19937 rng(5);
  int id = 0;
  for (const Shape& sh : {Shape{DType::Q8_0, 24, 96, 0}, Shape{DType::Q4_0, 16, 64, 0}, Shape{DType::Q8_0, 40, 256, 0},
                          Shape{DType::Q4_0, 32, 128, 0}}) {
    const RandomMatrix file = random_matrix(sh.type, sh.rows, sh.cols, sh.group, rng);
    const test::RandomActivation a = test::random_activation(file.m, rng);
    const RandomMatrix packed = test::repacked(file);  // rows are multiples of 8
    for (const Matrix& m : {file.m, packed.m}) {
      SCOPED_TRACE(std::string(dtype_name(m.type)) + " " + std::to_string(sh.rows) + "x" + std::to_string(sh.cols));
      for (const Tier tier : {Tier::O1, Tier::O3}) {
        llvm::Expected<Variant> v = (*c)->compile(Spec{m}, tier, "avxvnni_" + std::to_string(id++));
        ASSERT_TRUE(bool(v)) << llvm::toString(v.takeError());
        EXPECT_STREQ(v->family, "avxvnni");
        if (!runs) continue;
        std::vector<float> want(size_t(sh.rows)), got(size_t(sh.rows), -1.0f);
        reference_kernels().matvec(want.data(), file.m, a.x.data(), a.quantized(), 0, sh.rows);
        v->fn(got.data(), m, a.x.data(), a.quantized(), 0, sh.rows);
        EXPECT_EQ(0, std::memcmp(want.data(), got.data(), want.size() * 4));
      }
    }
  }
  if (!runs) GTEST_SKIP() << "code generated; not run: this CPU has no AVX-VNNI";
}

// Runs `steps` positions with the JIT attached and compares every logit with a JIT-free run.
// `check` then inspects the runtime.
// `edit` may change the model first (both runs see the change).
void expect_identical_logits(const char* model_file, const Options& o, int steps,
                             const std::function<void(Runtime&)>& check = nullptr,
                             const std::function<void(Model&)>& edit = nullptr, const TestHooks* hooks = nullptr) {
  const std::unique_ptr<Model> model = load_model(std::string(BF_SHARED_MODELS "/") + model_file);
  if (edit) edit(*model);
  Transformer ref(*model, reference_kernels());
  Transformer jit(*model, reference_kernels());
  std::unique_ptr<Runtime> r = Runtime::create(jit, o, hooks);
  ASSERT_NE(r, nullptr);
  jit.set_matvec_observer(r.get());
  const int vocab = model->config.vocab_size;
  int token = 1;
  for (int pos = 0; pos < steps; pos++) {
    const float* a = ref.forward(token, pos);
    const float* b = jit.forward(token, pos);
    ASSERT_EQ(0, std::memcmp(a, b, size_t(vocab) * 4)) << "position " << pos;
    token = int(std::max_element(a, a + vocab) - a);
  }
  r->drain();
  if (check) check(*r);
}

// The first line the runtime logged to `log` (a tmpfile), which this closes.
std::string first_line(FILE* log) {
  std::rewind(log);
  char line[512] = {};
  const bool read = std::fgets(line, sizeof line, log) != nullptr;
  std::fclose(log);
  return read ? line : "";
}

TEST(Runtime, TiersEverySiteUpToO3WithIdenticalLogits) {
  for (const char* model : {"stories260K.bin", "stories260K-q8_runq.bin", "stories260K-q8_0.gguf"}) {
    SCOPED_TRACE(model);
    // Synchronous: promotions happen at the calls that cross the thresholds (deterministic).
    const Options o{.policy = Policy::Tiered, .thresholds = {2, 4, 8, 16}, .sync = true};
    expect_identical_logits(model, o, 24, [](Runtime& r) {
      for (size_t s = 0; s < kSiteCount; s++) EXPECT_EQ(r.site_tier(Site(s)), Tier::O3) << site_name(Site(s));
      // Then both groups fused at O3 (the later positions ran through them, logits unchanged).
      EXPECT_NE(r.fused_kernel(Fusion::Qkv), nullptr);
      EXPECT_NE(r.fused_kernel(Fusion::W13), nullptr);
      EXPECT_EQ(r.tier_of_fused(Fusion::Qkv, r.fused_kernel(Fusion::Qkv)), Tier::O3);
      EXPECT_EQ(r.rejections(), 0u);
      EXPECT_EQ(r.failures(), 0u);
      EXPECT_GT(r.cycles_per_call(Site::Wq, Tier::Interp), 0.0);
      EXPECT_GT(r.cycles_per_call(Site::Wq, Tier::O3), 0.0);
      for (size_t s = 0; s < kSiteCount; s++) EXPECT_EQ(r.status(Site(s)).state, State::Top) << site_name(Site(s));
      EXPECT_EQ(r.status(Fusion::Qkv).state, State::Top);
      EXPECT_EQ(r.status(Fusion::W13).state, State::Top);
      // Every variant a site left was freed at the next observer call (no kernel running then):
      // only each site's O3 and the two fused kernels are alive.
      EXPECT_EQ(r.freed(), r.promotions() - kSiteCount - kFusionCount);
    });
  }
}

TEST(Runtime, BackgroundCompilesKeepLogitsIdentical) {
  const Options o{.policy = Policy::Tiered, .thresholds = {2, 4, 8, 16}};
  expect_identical_logits("stories260K.bin", o, 40, [](Runtime& r) {
    EXPECT_TRUE(r.background());
    // Every site's first call queued its interpreter variant; drained, every one was installed.
    EXPECT_GE(r.promotions(), kSiteCount);
    EXPECT_EQ(r.rejections(), 0u);
    EXPECT_EQ(r.failures(), 0u);
    for (size_t s = 0; s < kSiteCount; s++) EXPECT_GE(r.site_tier(Site(s)), Tier::Interp) << site_name(Site(s));
  });
}

struct MiscompileEverything final : TestHooks {
  bool miscompile_site(Site, Tier) const override { return true; }
  bool miscompile_fused(Fusion, Tier) const override { return true; }
};
struct MiscompileFused final : TestHooks {
  bool miscompile_fused(Fusion, Tier) const override { return true; }
};

TEST(Runtime, MiscompiledVariantIsRejectedAndSiteStaysOnItsTier) {
  for (const bool reassoc : {false, true}) {
    SCOPED_TRACE(reassoc ? "reassociated" : "exact");
    FILE* log = std::tmpfile();
    const Options o{.policy = Policy::Fixed, .fixed = Tier::O2, .sync = true, .reassoc = reassoc, .log = log};
    const MiscompileEverything hooks;
    expect_identical_logits(
        "stories260K.bin", o, 4,
        [](Runtime& r) {
          EXPECT_EQ(r.rejections(), kSiteCount);
          EXPECT_EQ(r.promotions(), 0u);
          for (size_t s = 0; s < kSiteCount; s++) {
            EXPECT_EQ(r.site_tier(Site(s)), Tier::Aot);
            EXPECT_EQ(r.status(Site(s)).state, State::Rejected);
            EXPECT_NE(r.status(Site(s)).why.find(" row "), std::string::npos) << r.status(Site(s)).why;
          }
        },
        nullptr, &hooks);
    const std::string line = first_line(log);
    EXPECT_NE(line.find("rejected by verification"), std::string::npos) << line;
  }
}

TEST(Runtime, MiscompiledFusedVariantIsRejectedAndSitesStaySeparate) {
  FILE* log = std::tmpfile();
  const Options o{.policy = Policy::Tiered, .thresholds = {2, 4, 8, 16}, .sync = true, .log = log};
  const MiscompileFused hooks;
  expect_identical_logits(
      "stories260K-q8_0.gguf", o, 24,
      [](Runtime& r) {
        EXPECT_EQ(r.rejections(), kFusionCount);
        EXPECT_EQ(r.fused_kernel(Fusion::Qkv), nullptr);
        EXPECT_EQ(r.fused_kernel(Fusion::W13), nullptr);
        EXPECT_EQ(r.status(Fusion::Qkv).state, State::Rejected);
        EXPECT_EQ(r.status(Fusion::W13).state, State::Rejected);
        for (size_t s = 0; s < kSiteCount; s++) EXPECT_EQ(r.site_tier(Site(s)), Tier::O3);
      },
      nullptr, &hooks);
  const std::string line = first_line(log);
  EXPECT_NE(line.find("fused O3 variant rejected by verification"), std::string::npos) << line;
}

// Options::cache as the store would fill it: learned tiers and objects by key; remembers the keys
// it was asked for.
struct MapCache final : CodeCache {
  std::map<std::string, Tier> tiers;
  std::map<std::string, std::vector<uint8_t>> objects;
  mutable std::vector<std::string> asked;
  Tier learned_tier(std::string_view unit) const override {
    const auto it = tiers.find(std::string(unit));
    return it == tiers.end() ? Tier::Aot : it->second;
  }
  const std::vector<uint8_t>* object(const std::string& key) const override {
    asked.push_back(key);
    const auto it = objects.find(key);
    return it == objects.end() ? nullptr : &it->second;
  }
  void keep(const std::vector<UnitOutcome>& units) {
    for (const UnitOutcome& u : units) {
      tiers[u.name] = u.tier;
      if (!u.key.empty() && u.object) objects[u.key].assign(u.object->begin(), u.object->end());
    }
  }
};

TEST(Runtime, WarmStartFromTheCacheCompilesNothingWithIdenticalLogits) {
  MapCache cache;
  const Options o{.policy = Policy::Fixed, .fixed = Tier::O3, .sync = true, .cache = &cache};
  expect_identical_logits("stories260K-q8_0.gguf", o, 8, [&](Runtime& r) {
    EXPECT_EQ(r.compiles(), kSiteCount + kFusionCount);
    EXPECT_EQ(r.loaded(), 0u);
    cache.keep(r.outcomes());
  });
  ASSERT_EQ(cache.objects.size(), kSiteCount + kFusionCount);
  expect_identical_logits("stories260K-q8_0.gguf", o, 8, [&](Runtime& r) {
    EXPECT_EQ(r.compiles(), 0u);
    EXPECT_EQ(r.loaded(), kSiteCount + kFusionCount);
    EXPECT_EQ(r.rejections(), 0u);
    EXPECT_EQ(r.time_to_top_s(), 0.0);
    EXPECT_NE(r.fused_kernel(Fusion::Qkv), nullptr);
    for (const UnitOutcome& u : r.outcomes()) EXPECT_TRUE(u.loaded) << u.name;
  });
}

// Code under the right key that computes the wrong thing (as a bad build or a bug would leave): the
// job its first call queues verifies it before it is ever installed, drops it and compiles again.
TEST(Runtime, WrongCodeUnderTheRightKeyIsRejectedOnItsFirstCall) {
  MapCache cache;
  cache.tiers["wq"] = Tier::O3;
  FILE* log = std::tmpfile();
  const Options o{.policy = Policy::Tiered, .thresholds = {2, 4, 8, 16}, .sync = true, .cache = &cache, .log = log};
  {
    const std::unique_ptr<Model> model = load_model(BF_SHARED_MODELS "/stories260K.bin");
    Transformer t(*model, reference_kernels());
    const std::unique_ptr<Runtime> r = Runtime::create(t, o);
    ASSERT_EQ(cache.asked.size(), 1u);  // wq's O3 key; no object yet
    llvm::Expected<std::unique_ptr<Compiler>> c = Compiler::create();
    ASSERT_TRUE(bool(c));
    llvm::Expected<Variant> bad = (*c)->compile(Spec{t.site_matrix(Site::Wq)}, Tier::O3,
                                               variant_symbol("wq", Tier::O3, cache.asked[0]), {.miscompile = true});
    ASSERT_TRUE(bool(bad)) << llvm::toString(bad.takeError());
    cache.objects[cache.asked[0]].assign(bad->object->begin(), bad->object->end());
  }
  expect_identical_logits("stories260K.bin", o, 24, [&](Runtime& r) {
    EXPECT_EQ(r.loaded(), 0u);  // rejected before it was ever installed
    EXPECT_EQ(r.rejections(), 1u);
    EXPECT_EQ(r.site_tier(Site::Wq), Tier::O3);  // compiled again, straight to the tier it learned
    for (const UnitOutcome& u : r.outcomes())
      if (u.name == "wq") {
        EXPECT_EQ(u.rejected_key, cache.asked[0]);
        EXPECT_FALSE(u.loaded);
      }
  });
  const std::string line = first_line(log);
  EXPECT_NE(line.find("wq: the stored O3 variant was rejected by verification"), std::string::npos) << line;
}

// A mixed-precision file: one layer's wq in another type. A kernel specialized to layer 0 would
// misread it, so wq stays AOT and qkv is not fused; everything else still tiers up.
TEST(Runtime, SiteWhoseLayersDifferStaysAot) {
  std::mt19937 rng(77);
  RandomMatrix other;
  const Options o{.policy = Policy::Tiered, .thresholds = {2, 4, 8, 16}, .sync = true};
  expect_identical_logits(
      "stories260K-q8_0.gguf", o, 24,
      [](Runtime& r) {
        EXPECT_EQ(r.site_tier(Site::Wq), Tier::Aot);
        EXPECT_EQ(r.status(Site::Wq).state, State::NotUniform);
        EXPECT_EQ(r.status(Fusion::Qkv).state, State::NotUniform);
        EXPECT_EQ(r.site_tier(Site::Wk), Tier::O3);
        EXPECT_EQ(r.fused_kernel(Fusion::Qkv), nullptr);
        EXPECT_NE(r.fused_kernel(Fusion::W13), nullptr);
        EXPECT_EQ(r.rejections(), 0u);
      },
      [&](Model& m) {
        const Matrix& wq = m.weights.layers[1].wq;
        other = random_matrix(DType::F32, wq.rows, wq.cols, 0, rng);
        m.weights.layers[1].wq = other.m;
      });
}

}  // namespace
}  // namespace bf::jit

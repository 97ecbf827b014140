// The appliance payload: what export appends and the appliance reads back, and what it refuses.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "engine/build_id.h"
#include "engine/error.h"
#include "native/appliance.h"
#include "native/cpu_features.h"

namespace bf::native {
namespace {

AppliancePayload sample() {
  AppliancePayload p;
  p.model_hash = "0123456789abcdef";
  p.model_description = "llama2c dim=64 layers=5 heads=8 kv=4 vocab=512 seq=512 f32";
  p.model_file = "stories 260K.bin";
  p.cpu = "znver4 +avx2,+avx512f";
  p.cpuid = host_cpu_features();
  p.engine_source = engine_source_id();
  p.exporter_build = "feedface";
  p.units.push_back({"wq", "O3", "bf_wq_O3_00", "f32 64x64", {1, 2, 3, 4, 5}});
  p.units.push_back({"qkv", "O3", "bf_qkv_O3_00", "", {9, 8, 7}});
  return p;
}

std::vector<uint8_t> executable_with(const AppliancePayload& p) {
  std::vector<uint8_t> file(100, 0x7f);  // stands for the executable's bytes
  const std::vector<uint8_t> tail = encode_appliance_payload(p, file.size());
  file.insert(file.end(), tail.begin(), tail.end());
  return file;
}

std::string error_of(const std::vector<uint8_t>& file) {
  try {
    decode_appliance_payload(file);
  } catch (const Error& e) {
    return e.message;
  }
  return "";
}

TEST(AppliancePayload, RoundTrips) {
  const AppliancePayload p = sample();
  const AppliancePayload q = decode_appliance_payload(executable_with(p));
  EXPECT_EQ(q.model_hash, p.model_hash);
  EXPECT_EQ(q.model_description, p.model_description);
  EXPECT_EQ(q.model_file, p.model_file);
  EXPECT_EQ(q.cpu, p.cpu);
  EXPECT_EQ(q.cpuid, p.cpuid);
  EXPECT_EQ(q.engine_source, p.engine_source);
  EXPECT_EQ(q.exporter_build, p.exporter_build);
  ASSERT_EQ(q.units.size(), 2u);
  EXPECT_EQ(q.units[0].name, "wq");
  EXPECT_EQ(q.units[0].symbol, "bf_wq_O3_00");
  EXPECT_EQ(q.units[0].spec, "f32 64x64");
  EXPECT_EQ(q.units[0].object, (std::vector<uint8_t>{1, 2, 3, 4, 5}));
  EXPECT_EQ(q.units[1].object, (std::vector<uint8_t>{9, 8, 7}));
  EXPECT_EQ(appliance_mismatch(q, host_cpu_features(), p.model_hash, p.model_description), "");
}

TEST(AppliancePayload, TheTemplateAndDamageAreNamed) {
  const std::vector<uint8_t> file = executable_with(sample());
  EXPECT_NE(error_of(std::vector<uint8_t>(100, 0x7f)).find("none is appended"), std::string::npos);
  // Every truncation and every flipped byte of the payload is refused (the checksum, the trailer).
  for (size_t n = 0; n < file.size(); n++) {
    EXPECT_NE(error_of(std::vector<uint8_t>(file.begin(), file.begin() + long(n))), "") << n;
  }
  for (size_t i = 100; i < file.size(); i++) {
    std::vector<uint8_t> bad = file;
    bad[i] ^= 0x20;
    EXPECT_NE(error_of(bad), "") << i;
  }
  std::vector<uint8_t> longer = file;
  longer.push_back(0);
  EXPECT_NE(error_of(longer).find("none is appended"), std::string::npos);
}

TEST(AppliancePayload, RefusesAnotherCpuEngineOrModel) {
  const AppliancePayload p = sample();
  const CpuFeatures host = host_cpu_features();
  CpuFeatures without = host;
  without[0] &= ~(1u << 28);  // avx
  if (!(host[0] >> 28 & 1)) GTEST_SKIP() << "this CPU has no AVX";
  EXPECT_NE(appliance_mismatch(p, without, p.model_hash, p.model_description).find("lacks avx"), std::string::npos);
  CpuFeatures hypervisor_off = host;
  hypervisor_off[0] ^= 1u << 31;  // not an instruction set: not compared
  EXPECT_EQ(appliance_mismatch(p, hypervisor_off, p.model_hash, p.model_description), "");
  EXPECT_NE(appliance_mismatch(p, host, "fedcba9876543210", p.model_description).find("another model"), std::string::npos);
  EXPECT_NE(appliance_mismatch(p, host, p.model_hash, "llama2c dim=288").find("another model"), std::string::npos);
  AppliancePayload other = p;
  other.engine_source = "bareflow-engine-source:0";
  EXPECT_NE(appliance_mismatch(other, host, p.model_hash, p.model_description).find("another engine"), std::string::npos);
}

TEST(CpuFeatures, TheTestMaskRemovesNamedFeatures) {
  const CpuFeatures host = host_cpu_features();
  if (!(host[1] >> 26 & 1)) GTEST_SKIP() << "no SSE2?";
  setenv("BAREFLOW_TEST_CPU_MASK", "sse2,avx512f", 1);
  const CpuFeatures masked = host_cpu_features();
  unsetenv("BAREFLOW_TEST_CPU_MASK");
  const std::string missing = missing_features(host, masked);
  EXPECT_EQ(missing, host[2] >> 16 & 1 ? "sse2, avx512f" : "sse2");
  EXPECT_EQ(parse_cpu_features(format_cpu_features(host)), host);
  EXPECT_THROW(parse_cpu_features("00000000"), Error);
}

// The family export picks for a CPU, from its feature words alone (any host): the same order as
// best_isa() (AVX-512 + VNNI, then AVX-VNNI, then AVX2).
TEST(CpuFeatures, BestIsaOfFollowsTheFeatureWords) {
  CpuFeatures f{};
  EXPECT_EQ(best_isa_of(f), Isa::Scalar);
  f[0] = 1u << 12 | 1u << 27 | 1u << 28 | 1u << 29;  // fma, osxsave, avx, f16c
  f[2] = 1u << 5;                                     // avx2
  EXPECT_EQ(best_isa_of(f), Isa::Scalar) << "the OS does not save the YMM state";
  f[8] = 0x7;
  EXPECT_EQ(best_isa_of(f), Isa::Avx2);
  f[5] = 1u << 4;  // avxvnni
  EXPECT_EQ(best_isa_of(f), Isa::AvxVnni);
  f[2] |= 1u << 16 | 1u << 17 | 1u << 30 | 1u << 31;  // avx512 f, dq, bw, vl
  f[3] = 1u << 11;                                    // avx512vnni
  EXPECT_EQ(best_isa_of(f), Isa::AvxVnni) << "the OS does not save the ZMM state";
  f[8] = 0xe7;
  EXPECT_EQ(best_isa_of(f), Isa::Avx512);
}

}  // namespace
}  // namespace bf::native

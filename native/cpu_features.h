// The CPU's instruction-set features as CPUID (and XGETBV, for what the OS saves) reports them:
// what exported code was compiled for, checked against the CPU it is about to run on. No LLVM:
// the appliance checks this itself.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "kernels/dispatch.h"

namespace bf::native {

// The feature words: leaf 1 ECX, EDX; leaf 7.0 EBX, ECX, EDX; leaf 7.1 EAX; leaf 0x80000001 ECX,
// EDX; XCR0's low half (the register state the OS enables: AVX and AVX-512 need it).
constexpr size_t kCpuWords = 9;
using CpuFeatures = std::array<uint32_t, kCpuWords>;

// This CPU's features. Test hook: $BAREFLOW_TEST_CPU_MASK ("avx512f,avx2", names as in
// missing_features) removes features, as a CPU without them would report.
CpuFeatures host_cpu_features();

// The instruction-set features `needed` has and `have` lacks, by name ("avx512f, avx512vnni"); ""
// when `have` has them all. Bits that name no instruction set (hypervisor, mitigations) are not
// compared.
std::string missing_features(const CpuFeatures& needed, const CpuFeatures& have);

// The kernels' instruction set (kernels/dispatch.h) a CPU with these features runs: the same
// rule as best_isa() on the running CPU.
Isa best_isa_of(const CpuFeatures& f);

// "w0:w1:...": hex words, as an exported image records them; parse_cpu_features throws bf::Error
// on anything else.
std::string format_cpu_features(const CpuFeatures& f);
CpuFeatures parse_cpu_features(const std::string& s);

}  // namespace bf::native

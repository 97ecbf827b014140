// What the JIT is asked to do: a plain struct, filled by name (designated initializers) by the
// command line (cli/jit_flags.cpp), bench and tests. Free of LLVM headers.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

namespace bf::jit {

class CodeCache;  // jit/code_cache.h

// What compiled the code a call ran. Aot is the kernel built into the executable; the others are
// the JIT's tiers, in promotion order. The profiler records them as variant numbers (Tier's value).
enum class Tier : uint8_t { Aot, Interp, O0, O1, O2, O3, Count };
constexpr size_t kTierCount = size_t(Tier::Count);
inline const char* tier_name(Tier t) {
  constexpr const char* names[kTierCount] = {"aot", "interp", "O0", "O1", "O2", "O3"};
  return size_t(t) < kTierCount ? names[size_t(t)] : "?";
}

enum class Policy : uint8_t {
  Off,     // no JIT (--jit=off): attach() starts nothing
  Interp,  // every site interpreted, never promoted (the slow baseline)
  Tiered,  // promoted by work counters
  Fixed,   // every site compiled at one level on its first call
};

// A work unit is 4096 multiply-adds (one 64x64 matvec); every call counts at least one. Counting work
// instead of calls makes a heavy kernel leave the interpreter within its first calls.
constexpr uint64_t kMacsPerUnit = 4096;
constexpr float kReassocTolerance = 1e-3f;

struct Options {
  Policy policy = Policy::Off;
  Tier fixed = Tier::O3;     // Policy::Fixed
  bool start_interp = true;  // Policy::Tiered: the bottom tier is the interpreter, else the AOT kernel
  // Work units after which a site is compiled at O0, O1, O2, O3. O1..O3 follow the original design's
  // 100 / 1,000 / 10,000 calls; the interpreter (~100x slower) is left early.
  std::array<uint64_t, 4> thresholds{10, 100, 1000, 10000};
  bool sync = false;   // Policy::Tiered: compile on the forward thread instead of a background thread
  bool trace = false;  // one line per promotion, a summary at exit
  // Compiled tiers may reorder float sums (vectorized f32 dot products); verification then accepts
  // |variant - reference| <= kReassocTolerance * (largest |reference output| of the call).
  bool reassoc = false;
  // Once every site of a group (wq/wk/wv, w1/w3) runs at the policy's top tier, compile the group
  // as one fused kernel at that tier (engine/sites.h, Fusion).
  bool fuse = true;
  bool report_code = false;  // attach(): at exit, which code ran (also with Policy::Off)
  // The persistent store's objects and learned tiers (state/): units start at the tier they
  // reached before, from stored code when its key matches this process. Must outlive the JIT.
  CodeCache* cache = nullptr;
  // The CPU to compile for, as LLVM names it, and its feature string ("+avx2,-avx512f,..."); empty:
  // this host. Export uses it to take up code a store learned on another machine (a guest) whose
  // features this host has, so that the code can be verified here before it is exported.
  std::string target_cpu = "", target_features = "";
  FILE* log = stderr;
};

}  // namespace bf::jit

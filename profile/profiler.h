// Per-call-site counters: calls, TSC cycles (total, min, max), work done (multiply-adds, bytes of
// weights read) and which variant of the site's kernel each call ran (0 = the AOT kernel; the JIT
// numbers and names its tiers). Printed as a table by `bareflow generate --profile`, written as JSON
// by --profile-json.
//
// record() is meant for one thread (the one running the forward pass): plain counters, no atomics.
#pragma once

#include <array>
#include <cassert>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace bf::prof {

// Kernel variants a site can count calls for: 0 is the kernel built into the executable ("aot").
constexpr size_t kMaxVariants = 8;

struct SiteStats {
  std::string name;
  uint64_t calls = 0;
  uint64_t cycles = 0;
  uint64_t min_cycles = UINT64_MAX;
  uint64_t max_cycles = 0;
  uint64_t macs = 0;   // multiply-adds
  uint64_t bytes = 0;  // bytes of weights read
  std::array<uint64_t, kMaxVariants> variant_calls{};
  std::array<uint64_t, kMaxVariants> variant_cycles{};
};

class Profiler {
 public:
  // variant_names[v] names variant v in the output (default: only variant 0, "aot").
  explicit Profiler(std::vector<std::string> site_names, std::vector<std::string> variant_names = {"aot"});
  void set_variant_names(std::vector<std::string> names);

  void record(size_t site, uint64_t cycles, uint64_t macs, uint64_t bytes, uint8_t variant) {
    assert(site < sites_.size() && variant < variant_names_.size());
    SiteStats& s = sites_[site];
    s.calls++;
    s.cycles += cycles;
    if (cycles < s.min_cycles) s.min_cycles = cycles;
    if (cycles > s.max_cycles) s.max_cycles = cycles;
    s.macs += macs;
    s.bytes += bytes;
    s.variant_calls[variant]++;
    s.variant_cycles[variant] += cycles;
  }

  const std::vector<SiteStats>& sites() const { return sites_; }
  uint64_t total_calls() const;
  uint64_t total_cycles() const;

  // Cycles one profiled call costs in bookkeeping (two TSC reads, the hook and record()), measured
  // once by timing the same sequence in a loop.
  static double overhead_cycles_per_call();

  // `wall_seconds` is the time of the run being profiled (decode), used for the shares and the
  // bookkeeping overhead; 0 = unknown.
  void print(FILE* out, double wall_seconds) const;
  // The same as JSON; the caller opens `out` (and checks that it can, before the run) and closes it.
  void write_json(FILE* out, double wall_seconds) const;

 private:
  std::vector<SiteStats> sites_;
  std::vector<std::string> variant_names_;
};

}  // namespace bf::prof

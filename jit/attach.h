// The JIT attached to a Transformer, for its users (bareflow generate, bench): free of LLVM headers.
// In a build without LLVM (BAREFLOW_JIT=OFF, jit/disabled.cpp) available() is false and attach()
// starts nothing.
#pragma once

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "engine/transformer.h"
#include "jit/code_cache.h"
#include "jit/options.h"
#include "profile/site_profiler.h"

namespace bf::jit {

// False when this executable was built without LLVM.
bool available();

// An attached JIT: detaches (AOT kernels back) when destroyed.
class Session {
 public:
  virtual ~Session() = default;
  // Waits for queued compiles (benchmarks), then prints the summary if o.trace, the code report if
  // o.report_code.
  virtual void finish(FILE* out) = 0;
  // Blocks until no compile is queued or running.
  virtual void drain() {}
  // Seconds from the first call until every site ran at the top tier; -1 until then.
  virtual double time_to_top_s() const { return -1; }
  // Milliseconds spent compiling so far.
  virtual double compile_ms() const { return 0; }
  // Compiles run so far; variants installed from Options::cache.
  virtual uint64_t compiles() const { return 0; }
  virtual uint64_t loaded() const { return 0; }
  // Every site and fused group as it stands (after drain()): what the persistent store records.
  virtual std::vector<UnitOutcome> outcomes() const { return {}; }
  // The CPU the code is compiled for, as LLVM names it, and its feature string ("znver4 +avx,...").
  virtual std::string target() const { return ""; }
};

// Starts the JIT on `t` (`t` must outlive the session). Null when o.policy is Off without
// o.report_code, or when LLVM cannot serve this host (after one line on o.log). With a profiler,
// the profiler observes the calls first and learns each call's tier from the JIT.
std::unique_ptr<Session> attach(Transformer& t, const Options& o, prof::SiteProfiler* profiler = nullptr);

// bareflow bench --jit: how many times faster W's matvec runs compiled at O3 than in the LLVM
// interpreter, per multiply-add (the interpreter runs a row prefix of ~2M multiply-adds; O3 the
// whole matrix, best of several calls). 0 if LLVM cannot serve this host.
double o3_vs_interp_speedup(const Matrix& W);

}  // namespace bf::jit

// The JIT's command-line flags (bareflow generate, bench) and its attachment to a Transformer.
// Free of LLVM headers; in a build without LLVM (BAREFLOW_JIT=OFF) every flag but --jit=off fails.
#pragma once

#include <cstdio>
#include <memory>
#include <string>

#include "cli/args.h"
#include "engine/transformer.h"
#include "profile/site_profiler.h"

namespace bf::jit {

struct CliOptions;

// Help text of the flags, for the subcommands' usage.
extern const char kCliUsage[];

// An attached JIT: detaches (AOT kernels back) when destroyed.
class Session {
 public:
  virtual ~Session() = default;
  // Waits for queued compiles (benchmarks), then prints the summary if --trace-jit.
  virtual void finish(FILE* out) = 0;
  // For bareflow bench --jit. Blocks until no compile is queued or running.
  virtual void drain() {}
  // Seconds from the first call until every site ran at the top tier; -1 until then.
  virtual double time_to_top_s() const { return -1; }
  // Milliseconds spent compiling so far.
  virtual double compile_ms() const { return 0; }
};

// bareflow bench --jit: how many times faster W's matvec runs compiled at O3 than in the LLVM
// interpreter, per multiply-add (the interpreter runs a row prefix of ~2M multiply-adds; O3 the
// whole matrix, best of several calls). 0 if LLVM cannot serve this host.
double o3_vs_interp_speedup(const Matrix& W);

class Cli {
 public:
  Cli();
  ~Cli();
  // Consumes `flag` (and its value from `a`) if it is a JIT flag; throws bf::Error on a bad value.
  bool parse(const std::string& flag, cli::Args& a);
  // Starts the JIT on `t` (null when --jit=off or LLVM is unusable). With a profiler, the profiler
  // observes the calls first and learns each call's tier from the JIT.
  std::unique_ptr<Session> attach(Transformer& t, prof::SiteProfiler* profiler) const;

 private:
  std::unique_ptr<CliOptions> o_;
};

}  // namespace bf::jit

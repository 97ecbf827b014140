// bareflow bench: decode and prefill speed on synthetic models of real shapes, against the
// machine's read bandwidth measured in the same run (the roofline of memory-bound decode).
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bench/synthetic.h"
#include "jit/options.h"
#include "kernels/dispatch.h"

namespace bf::bench {

// A JIT configuration timed besides AOT (bareflow bench --jit): `mode` is its --jit=MODE, `options`
// what generate's flags make of it (jit::attach starts it on a fresh Transformer).
struct JitMode {
  std::string mode;
  jit::Options options;
};

struct BenchOptions {
  std::vector<std::pair<std::string, DType>> models;  // (shape name, weight type)
  std::vector<int> threads;
  Isa isa = Isa::Scalar;
  int runs = 5;           // timed runs per row; the median is reported
  int prompt = 128;       // prefill tokens per run
  int decode = 32;        // decode tokens per run
  std::string dir;        // where synthetic model files are written (and deleted)
  bool keep = false;      // leave them there (to rerun them with generate --profile)
  bool repack = true;     // repack_weights after loading, as generate does (--no-repack: not)
  std::vector<JitMode> jit;  // O0, O1, O2, O3, tiered in that order, or none
};

// Decode tok/s of the JIT modes (--jit); 0 where not measured.
struct JitResult {
  double o3_vs_interp = 0;    // the wq matvec per multiply-add, O3 against the LLVM interpreter
  double tok_s[4] = {};       // every site compiled at O0, O1, O2, O3 on its first call
  double tiered_tok_s = 0;    // tiered (from the interpreter) once every site runs at O3
  double vs_aot = 0;          // O3 / AOT decode speed: the median ratio of paired runs
  double tiered_vs_aot = 0;   // tiered / AOT, the same way
  double time_to_top_s = -1;  // tiered: seconds from the first call until every site ran at O3
  double compile_ms = 0;      // tiered: total compile time of all its promotions
};

struct BenchResult {
  std::string shape;
  DType format = DType::F32;
  int threads = 1;
  std::string isa;
  double decode_tok_s = 0, prefill_tok_s = 0;
  uint64_t bytes_per_token = 0;
  double bandwidth_gb_s = 0, roofline_tok_s = 0, pct_roofline = 0;
  double peak_rss_mb = 0, weights_mb = 0, kv_cache_mb = 0;
  double load_avg = 0;  // 1-minute load average when the row finished (other work skews figures)
  bool has_jit = false;
  JitResult jit;
};

// Streaming-read bandwidth in GB/s (10^9 bytes/s) with `threads` threads over a 1 GiB buffer: the
// best of several passes, each thread summing its slice with the ISA's widest loads.
double measure_bandwidth(Isa isa, int threads);

// Runs every (model, threads) combination, measuring the bandwidth right before each, then each of
// o.jit on a fresh Transformer; progress lines go to `log`.
std::vector<BenchResult> run_bench(const BenchOptions& o, FILE* log);

void print_table(FILE* out, const std::vector<BenchResult>& rows);
void print_json(FILE* out, const std::vector<BenchResult>& rows);

}  // namespace bf::bench

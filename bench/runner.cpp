#include "bench/runner.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <memory>
#include <tuple>

#include "bench/temp_files.h"
#include "engine/error.h"
#include "engine/model.h"
#include "engine/threadpool.h"
#include "engine/transformer.h"
#include "jit/attach.h"

namespace bf::bench {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0.0 : n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Linux keeps a per-process peak RSS (VmHWM) that writing 5 to clear_refs resets to the current
// RSS, so each row gets its own peak. Where that fails (not Linux) the peak is the process's.
void reset_peak_rss() {
  if (FILE* f = std::fopen("/proc/self/clear_refs", "w")) {
    std::fputs("5", f);
    std::fclose(f);
  }
}

// The 1-minute load average: other work on the machine skews every figure, so each row records it.
double load_average() {
  double l = 0;
  if (FILE* f = std::fopen("/proc/loadavg", "r")) {
    if (std::fscanf(f, "%lf", &l) != 1) l = 0;
    std::fclose(f);
  }
  return l;
}

double peak_rss_mb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0) return double(std::stoll(line.substr(6))) / 1024.0;  // kB
  return 0.0;
}

// One run: prefill tokens[0, prompt), then decode the rest one position at a time. Returns the
// seconds of each phase.
std::pair<double, double> run_once(Transformer& tf, const std::vector<int>& tokens, int prompt) {
  Clock::time_point t0 = Clock::now();
  tf.prefill(tokens.data(), prompt, 0);
  const double tp = seconds_since(t0);
  t0 = Clock::now();
  for (size_t i = size_t(prompt); i < tokens.size(); i++) tf.forward(tokens[i], int(i));
  return {tp, seconds_since(t0)};
}

// Median prefill and decode tok/s over `runs` runs after one untimed run (page faults on the
// mapping; with a fixed JIT tier, its compiles on each site's first call).
std::pair<double, double> measure(Transformer& tf, const std::vector<int>& tokens, int prompt, int runs) {
  const double decode = double(tokens.size()) - prompt;
  std::vector<double> pre, dec;
  for (int run = 0; run <= runs; run++) {
    const auto [tp, td] = run_once(tf, tokens, prompt);
    if (run == 0) continue;
    pre.push_back(prompt / tp);
    dec.push_back(decode / td);
  }
  return {median(pre), median(dec)};
}

// Median decode tok/s of `tf` over `runs` pairs, each side of a pair one or more runs of `tf` or of
// `aot` (the order flips every pair), and the median of the per-pair ratios tf / aot. Load on a shared machine changes
// from second to second; two neighboring runs see nearly the same machine, so the ratio of a pair
// is far steadier than the ratio of two medians taken minutes apart.
std::pair<double, double> measure_paired(Transformer& tf, Transformer& aot, const std::vector<int>& tokens,
                                         int prompt, int runs) {
  const double decode = double(tokens.size()) - prompt;
  // Untimed: page faults, a fixed tier's compiles. Its length sets how many runs make one timed
  // side of a pair: at least ~0.1 s of decode, or a small model's pair is timer and scheduler noise.
  run_once(tf, tokens, prompt);
  const double first = run_once(aot, tokens, prompt).second;
  const int repeat = int(std::clamp(0.1 / std::max(first, 1e-6), 1.0, 50.0));
  const auto side = [&](Transformer& t) {
    double s = 0;
    for (int k = 0; k < repeat; k++) s += run_once(t, tokens, prompt).second;
    return s;
  };
  std::vector<double> tok_s, ratio;
  for (int run = 0; run < runs; run++) {
    double td = 0, ta = 0;
    if (run % 2) {
      ta = side(aot);
      td = side(tf);
    } else {
      td = side(tf);
      ta = side(aot);
    }
    tok_s.push_back(decode * repeat / td);
    ratio.push_back(ta / td);
  }
  return {median(tok_s), median(ratio)};
}

// Decode tok/s of every JIT mode on a fresh Transformer each (prefill is not observed by the JIT);
// O3 and tiered are timed in pairs with `aot` for their ratios to it.
JitResult measure_jit(const BenchOptions& o, const Model& model, Transformer& aot, int threads,
                      const std::vector<int>& tokens, int prompt, FILE* log) {
  // Tiered needs ~10,000 work units per site for O3: at most this many decode tokens of warm-up.
  constexpr size_t kMaxWarmupTokens = 4096;
  JitResult j;
  if (!o.jit.empty()) {
    j.o3_vs_interp = jit::o3_vs_interp_speedup(model.weights.layers[0].wq);
    std::fprintf(log, "bench:   jit wq matvec: O3 %.0fx the interpreter per multiply-add\n", j.o3_vs_interp);
  }
  for (size_t m = 0; m < o.jit.size(); m++) {
    Transformer tf(model, kernels_for(o.isa), threads);
    const std::unique_ptr<jit::Session> s = jit::attach(tf, o.jit[m].options);
    if (!s) fail("--jit", "LLVM cannot compile for this host");
    const std::string& mode = o.jit[m].mode;
    if (mode == "tiered") {
      const size_t warmup = std::max<size_t>(1, kMaxWarmupTokens / (tokens.size() - size_t(prompt)));
      for (size_t w = 0; w < warmup && s->time_to_top_s() < 0; w++) run_once(tf, tokens, prompt);
      s->drain();
      j.time_to_top_s = s->time_to_top_s();
      j.compile_ms = s->compile_ms();
      std::tie(j.tiered_tok_s, j.tiered_vs_aot) = measure_paired(tf, aot, tokens, prompt, o.runs);
      std::fprintf(log, "bench:   jit tiered: decode %.1f tok/s, %.3fx AOT (paired runs)\n", j.tiered_tok_s,
                   j.tiered_vs_aot);
    } else if (mode == "O3") {
      std::tie(j.tok_s[m], j.vs_aot) = measure_paired(tf, aot, tokens, prompt, o.runs);
      std::fprintf(log, "bench:   jit O3: decode %.1f tok/s, %.3fx AOT (paired runs)\n", j.tok_s[m], j.vs_aot);
    } else {
      j.tok_s[m] = measure(tf, tokens, prompt, o.runs).second;
      std::fprintf(log, "bench:   jit %s: decode %.1f tok/s\n", mode.c_str(), j.tok_s[m]);
    }
  }
  return j;
}

}  // namespace

double measure_bandwidth(Isa isa, int threads) {
  constexpr size_t kBytes = size_t(1) << 30;
  constexpr int kPasses = 5;
  const size_t n = kBytes / sizeof(float);
  std::unique_ptr<float[]> buf(new float[n]);
  for (size_t i = 0; i < n; i++) buf[i] = float(i & 1023);  // touch every page
  ThreadPool pool(threads);
  struct Job {
    Isa isa;
    const float* p;
    size_t n;
    int parts;
    float sums[256];
  } job{isa, buf.get(), n, threads, {}};
  double best = 0;
  for (int pass = 0; pass < kPasses; pass++) {
    const Clock::time_point t0 = Clock::now();
    pool.run(
        [](void* ctx, int i, int) {
          Job& j = *static_cast<Job*>(ctx);
          const size_t chunk = j.n / size_t(j.parts) / 64 * 64;
          const size_t lo = chunk * size_t(i), hi = i + 1 == j.parts ? j.n : lo + chunk;
          j.sums[i] = stream_sum(j.isa, j.p + lo, hi - lo);
        },
        &job, threads);
    const double s = seconds_since(t0);
    best = std::max(best, double(kBytes) / s / 1e9);
  }
  volatile float sink = job.sums[0];  // the sums must be computed
  (void)sink;
  return best;
}

std::vector<BenchResult> run_bench(const BenchOptions& o, FILE* log) {
  std::vector<BenchResult> rows;
  for (const auto& [shape_name, type] : o.models) {
    const ModelShape& shape = find_shape("--model-shape", shape_name);
    TempFile file(o.dir + "/bareflow-bench-" + std::to_string(getpid()) + "-" + shape.name + "-" +
                  dtype_name(type) + ".gguf");
    const Clock::time_point tw = Clock::now();
    const uint64_t file_bytes = write_synthetic_gguf(file.path(), shape, type, 42);
    std::fprintf(log, "bench: wrote %s (%.0f MB) in %.1f s\n", file.path().c_str(), double(file_bytes) / 1e6,
                 seconds_since(tw));
    const std::unique_ptr<Model> model = load_model(file.path());
    if (o.repack) {
      const Clock::time_point tr = Clock::now();
      const uint64_t bytes = repack_weights(*model);
      std::fprintf(log, "bench: repacked %.0f MB in %.2f s\n", double(bytes) / 1e6, seconds_since(tr));
    }
    // The mapping keeps the bytes: unlinking now leaves nothing behind even if the bench is killed.
    if (o.keep) {
      file.keep();
    } else {
      file.remove();
    }
    const Config& c = model->config;
    const int prompt = std::min(o.prompt, c.seq_len / 2);
    const int decode = std::min(o.decode, c.seq_len - prompt);
    std::vector<int> tokens(size_t(prompt + decode));  // decode = the tokens after the prompt
    for (size_t i = 0; i < tokens.size(); i++) tokens[i] = int((i * 7919 + 13) % size_t(c.vocab_size));
    for (int threads : o.threads) {
      // Right before the row's runs: on a shared machine the bandwidth available changes.
      const double bandwidth = measure_bandwidth(o.isa, threads);
      std::fprintf(log, "bench: read bandwidth with %d thread(s): %.1f GB/s\n", threads, bandwidth);
      reset_peak_rss();
      BenchResult r;
      Transformer aot(*model, kernels_for(o.isa), threads);  // kept for the JIT's paired runs
      std::tie(r.prefill_tok_s, r.decode_tok_s) = measure(aot, tokens, prompt, o.runs);
      r.shape = shape.name;
      r.format = type;
      r.threads = threads;
      r.isa = isa_name(o.isa);
      r.bytes_per_token = model->bytes_per_token();
      r.bandwidth_gb_s = bandwidth;
      r.roofline_tok_s = r.bandwidth_gb_s * 1e9 / double(r.bytes_per_token);
      r.pct_roofline = 100.0 * r.decode_tok_s / r.roofline_tok_s;
      r.peak_rss_mb = peak_rss_mb();  // of the AOT runs: taken before the JIT's
      r.load_avg = load_average();
      r.weights_mb = double(file_bytes) / (1 << 20);
      r.kv_cache_mb = 8.0 * c.n_layers * c.seq_len * c.kv_dim() / (1 << 20);
      std::fprintf(log, "bench: %s %s %d thread(s): decode %.1f tok/s (%.0f%% of roofline), prefill %.1f tok/s\n",
                   r.shape.c_str(), dtype_name(type), threads, r.decode_tok_s, r.pct_roofline, r.prefill_tok_s);
      if (!o.jit.empty()) {
        r.has_jit = true;
        r.jit = measure_jit(o, *model, aot, threads, tokens, prompt, log);
        r.load_avg = load_average();
      }
      rows.push_back(r);
    }
  }
  return rows;
}

void print_table(FILE* out, const std::vector<BenchResult>& rows) {
  const bool jit = !rows.empty() && rows[0].has_jit;
  std::fprintf(out, "| shape | format | threads | isa | decode tok/s | prefill tok/s | MB/token | GB/s | roofline tok/s | %% roofline | peak RSS MB | weights+KV MB | load |");
  if (jit) std::fprintf(out, " O3/interp (wq) | O0 | O1 | O2 | O3 | tiered | O3/AOT | tiered/AOT | to O3 s | compile ms |");
  std::fprintf(out, "\n| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
  if (jit) std::fprintf(out, " ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
  std::fprintf(out, "\n");
  for (const BenchResult& r : rows) {
    std::fprintf(out, "| %s | %s | %d | %s | %.1f | %.1f | %.1f | %.1f | %.1f | %.0f%% | %.0f | %.0f | %.1f |",
                 r.shape.c_str(), dtype_name(r.format), r.threads, r.isa.c_str(), r.decode_tok_s,
                 r.prefill_tok_s, double(r.bytes_per_token) / 1e6, r.bandwidth_gb_s, r.roofline_tok_s,
                 r.pct_roofline, r.peak_rss_mb, r.weights_mb + r.kv_cache_mb, r.load_avg);
    // The interpreter is timed on one matvec, not on decode: a stories15M token would take seconds.
    const JitResult& j = r.jit;
    if (jit)
      std::fprintf(out, " %.0fx | %.1f | %.1f | %.1f | %.1f | %.1f | %.3f | %.3f | %.3f | %.0f |", j.o3_vs_interp, j.tok_s[0], j.tok_s[1], j.tok_s[2], j.tok_s[3], j.tiered_tok_s, j.vs_aot,
                   j.tiered_vs_aot, j.time_to_top_s, j.compile_ms);
    std::fprintf(out, "\n");
  }
}

void print_json(FILE* out, const std::vector<BenchResult>& rows) {
  std::fputs("[", out);
  for (size_t i = 0; i < rows.size(); i++) {
    const BenchResult& r = rows[i];
    std::fprintf(out,
                 "%s\n  {\"shape\": \"%s\", \"format\": \"%s\", \"threads\": %d, \"isa\": \"%s\", "
                 "\"decode_tok_s\": %.3f, \"prefill_tok_s\": %.3f, \"bytes_per_token\": %llu, "
                 "\"bandwidth_gb_s\": %.3f, \"roofline_tok_s\": %.3f, \"pct_roofline\": %.2f, "
                 "\"peak_rss_mb\": %.1f, \"weights_mb\": %.1f, \"kv_cache_mb\": %.1f, \"load_avg\": %.2f",
                 i ? "," : "", r.shape.c_str(), dtype_name(r.format), r.threads, r.isa.c_str(), r.decode_tok_s,
                 r.prefill_tok_s, (unsigned long long)r.bytes_per_token, r.bandwidth_gb_s, r.roofline_tok_s,
                 r.pct_roofline, r.peak_rss_mb, r.weights_mb, r.kv_cache_mb, r.load_avg);
    const JitResult& j = r.jit;
    if (r.has_jit)
      std::fprintf(out,
                   ", \"jit_interp_tok_s\": null, \"jit_o3_vs_interp_wq\": %.1f, \"jit_O0_tok_s\": %.3f, "
                   "\"jit_O1_tok_s\": %.3f, "
                   "\"jit_O2_tok_s\": %.3f, \"jit_O3_tok_s\": %.3f, \"jit_tiered_tok_s\": %.3f, "
                   "\"jit_vs_aot\": %.4f, \"jit_tiered_vs_aot\": %.4f, \"jit_time_to_top_s\": %.4f, "
                   "\"jit_compile_ms\": %.2f",
                   j.o3_vs_interp, j.tok_s[0], j.tok_s[1], j.tok_s[2], j.tok_s[3], j.tiered_tok_s, j.vs_aot,
                   j.tiered_vs_aot, j.time_to_top_s, j.compile_ms);
    std::fputs("}", out);
  }
  std::fputs(rows.empty() ? "]\n" : "\n]\n", out);
}

}  // namespace bf::bench

// jit_bench: the JIT against the AOT kernels built into bareflow (scalar reference = the generic
// x86-64 build, and the best SIMD ISA of this CPU), on real model shapes.
//   jit_bench [--quick] [--reassoc]   matvec: compile time per tier, cycles per call (median), and
//                                     the interpreter -> O3 speedup on the same row subset
//                                     (--quick: shapes up to 4M elements; --reassoc: as --jit-reassoc)
//   jit_bench --decode MODEL [POSITIONS]
//                                     decode tok/s of MODEL (one thread; a synthetic model of a real
//                                     shape: `bareflow bench --keep --model-shape S --format F` leaves
//                                     it in $TMPDIR) with AOT scalar, AOT SIMD (also with the profiler
//                                     attached), JIT O3 (exact and reassociated), and tiered from the
//                                     interpreter: time to reach O3 at every site
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "engine/error.h"
#include "engine/model.h"
#include "jit/compiler.h"
#include "jit/runtime.h"
#include "profile/site_profiler.h"
#include "kernels/dispatch.h"
#include "kernels/cycles.h"

namespace {

using namespace bf;
using bf::jit::Tier;

struct Bench {
  const char* model;
  const char* site;
  DType type;
  int64_t rows, cols;
};

const Bench kBenches[] = {
    {"stories110M", "wq", DType::F32, 768, 768},      {"stories110M", "w1", DType::F32, 2048, 768},
    {"stories110M", "wq", DType::Q8_0, 768, 768},     {"stories110M", "w1", DType::Q8_0, 2048, 768},
    {"stories110M", "w2", DType::Q8_0, 768, 2048},    {"stories110M", "cls", DType::Q8_0, 32000, 768},
    {"tinyllama-1.1b", "wq", DType::Q8_0, 2048, 2048}, {"tinyllama-1.1b", "w1", DType::Q8_0, 5632, 2048},
    {"tinyllama-1.1b", "w2", DType::Q8_0, 2048, 5632},
};

struct Data {
  Matrix m;
  std::vector<uint8_t> bytes;
  std::vector<float> x;
  std::vector<int8_t> q;
  std::vector<float> s;
  QuantizedVector xq;
};

Data make(const Bench& b, std::mt19937& rng) {
  Data d;
  d.m.type = b.type;
  d.m.rows = b.rows;
  d.m.cols = b.cols;
  const int64_t n = b.rows * b.cols;
  std::uniform_real_distribution<float> f(-1.0f, 1.0f);
  if (b.type == DType::F32) {
    d.bytes.resize(size_t(n) * 4);
    for (int64_t i = 0; i < n; i++) {
      const float v = f(rng);
      std::memcpy(&d.bytes[size_t(i) * 4], &v, 4);
    }
  } else {
    d.bytes.resize(size_t(n / kBlock) * sizeof(BlockQ8_0));
    for (size_t i = 0; i < d.bytes.size(); i += sizeof(BlockQ8_0)) {
      const uint16_t h = f32_to_fp16(0.01f + 0.01f * f(rng));
      std::memcpy(&d.bytes[i], &h, 2);
      for (size_t k = 2; k < sizeof(BlockQ8_0); k++) d.bytes[i + k] = uint8_t(rng());
    }
  }
  d.m.data = d.bytes.data();
  d.x.resize(size_t(b.cols));
  for (float& v : d.x) v = f(rng);
  d.q.resize(d.x.size());
  d.s.resize(d.x.size());
  d.xq = {d.q.data(), d.s.data(), b.cols, matrix_group(d.m)};
  if (matrix_uses_quantized_activation(d.m)) reference_kernels().quantize(d.xq, d.x.data());
  return d;
}

// Median cycles of one call over `reps` calls (after one warm-up call).
double cycles_per_call(MatvecFn fn, const Data& d, int64_t rows, int reps) {
  std::vector<float> out(static_cast<size_t>(rows));
  const QuantizedVector* xq = matrix_uses_quantized_activation(d.m) ? &d.xq : nullptr;
  fn(out.data(), d.m, d.x.data(), xq, 0, rows);
  std::vector<uint64_t> t(static_cast<size_t>(reps));
  for (int i = 0; i < reps; i++) {
    const uint64_t t0 = prof::cycles();
    fn(out.data(), d.m, d.x.data(), xq, 0, rows);
    t[size_t(i)] = prof::cycles() - t0;
  }
  std::nth_element(t.begin(), t.begin() + reps / 2, t.end());
  return double(t[size_t(reps / 2)]);
}

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Decodes `tokens` positions from 0 (argmax feeding) and returns tok/s over the last `timed` of them;
// with a runtime, *top_s gets the decode seconds until every site ran at O3 (-1 if never).
double decode(Transformer& tf, jit::Runtime* r, int tokens, int timed, double* top_s) {
  const int vocab = tf.config().vocab_size;
  int token = 1;
  const Clock::time_point start = Clock::now();
  Clock::time_point t0 = start;
  if (top_s) *top_s = -1;
  for (int pos = 0; pos < tokens; pos++) {
    if (pos == tokens - timed) t0 = Clock::now();
    const float* logits = tf.forward(token, pos);
    token = int(std::max_element(logits, logits + vocab) - logits);
    if (r && top_s && *top_s < 0) {
      bool top = true;
      for (size_t s = 0; s < kSiteCount; s++) top = top && r->site_tier(Site(s)) == Tier::O3;
      if (top) *top_s = since(start);
    }
  }
  return timed / since(t0);
}

int decode_bench(const std::string& path, int positions) {
  const std::unique_ptr<Model> model = load_model(path);
  const int n = std::clamp(positions, 33, model->config.seq_len), timed = 32;
  constexpr int kRuns = 3;  // best of: other load on the machine only ever slows a run down
  std::printf("%s, one thread, decode tok/s over the last %d of %d positions, best of %d runs\n", path.c_str(),
              timed, n, kRuns);

  struct Mode {
    const char* name;
    Isa isa;
    bool profile = false;
    jit::Options jit{};  // Policy::Off: no JIT
    bool never = false;  // JIT counters only: thresholds never reached
  };
  using jit::Policy;
  const Isa simd = best_isa();
  const jit::Options counters_only{.policy = Policy::Tiered, .start_interp = false,
                                   .thresholds = {UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX}};
  const Mode modes[] = {
      {.name = "AOT scalar (generic build)", .isa = Isa::Scalar},
      {.name = "AOT SIMD", .isa = simd},
      {.name = "AOT SIMD --profile", .isa = simd, .profile = true},
      {.name = "AOT SIMD + JIT counters only", .isa = simd, .jit = counters_only, .never = true},
      {.name = "JIT O3", .isa = simd, .jit = {.policy = Policy::Fixed}},
      {.name = "JIT O3 --jit-reassoc", .isa = simd, .jit = {.policy = Policy::Fixed, .reassoc = true}},
      {.name = "JIT tiered (from interp)", .isa = simd, .jit = {.policy = Policy::Tiered}},
      {.name = "JIT tiered --jit-reassoc", .isa = simd, .jit = {.policy = Policy::Tiered, .reassoc = true}},
  };
  double scalar = 0, aot = 0;
  for (const Mode& m : modes) {
    double best = 0, top = -1, overhead = 0;
    for (int run = 0; run < kRuns; run++) {
      Transformer tf(*model, kernels_for(m.isa), 1);
      prof::SiteProfiler sp;
      std::unique_ptr<jit::Runtime> r;
      if (m.profile) tf.set_matvec_observer(&sp);
      const bool with_jit = m.jit.policy != Policy::Off;
      if (with_jit) {
        r = jit::Runtime::create(tf, m.jit);
        if (!r) return 1;
        tf.set_matvec_observer(r.get());
      }
      double top_s = -1;
      const Clock::time_point t0 = Clock::now();
      const double tps = decode(tf, r.get(), n, timed, with_jit && !m.never ? &top_s : nullptr);
      if (m.profile)
        overhead = 100.0 * prof::Profiler::overhead_cycles_per_call() * double(sp.profiler().total_calls()) /
                   prof::cycles_per_second() / since(t0);
      if (r) r->drain();
      tf.set_matvec_observer(nullptr);
      best = std::max(best, tps);
      if (top_s >= 0 && (top < 0 || top_s < top)) top = top_s;
    }
    if (m.isa == Isa::Scalar) scalar = best;
    if (m.jit.policy == Policy::Off && !m.profile && m.isa != Isa::Scalar) aot = best;
    std::printf("  %-30s %8.2f tok/s  %5.2fx scalar  %5.2fx AOT %s", m.name, best, best / scalar, aot > 0 ? best / aot : 1.0,
                isa_name(simd));
    if (m.profile) std::printf("  (profiler bookkeeping %.4f%% of the run)", overhead);
    if (top >= 0) std::printf("  (every site at O3 after %.3f s of decode)", top);
    std::printf("\n");
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 3 && std::strcmp(argv[1], "--decode") == 0) {
    try {
      return decode_bench(argv[2], argc > 3 ? std::atoi(argv[3]) : 96);
    } catch (const Error& e) {
      std::fprintf(stderr, "jit_bench: %s\n", e.what());
      return 2;
    }
  }
  bool quick = false, reassoc = false;
  for (int i = 1; i < argc; i++) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      quick = true;
    } else if (std::strcmp(argv[i], "--reassoc") == 0) {
      reassoc = true;
    } else {
      std::fprintf(stderr, "usage: jit_bench [--quick] [--reassoc] | --decode MODEL [POSITIONS]\n");
      return 2;
    }
  }
  llvm::Expected<std::unique_ptr<jit::Compiler>> c = jit::Compiler::create();
  if (!c) {
    std::fprintf(stderr, "jit_bench: %s\n", llvm::toString(c.takeError()).c_str());
    return 1;
  }
  const Isa isa = best_isa();
  const double hz = prof::cycles_per_second();
  std::printf("host %s, AOT SIMD = %s, TSC %.3f GHz; cycles per call (median), compile ms in ()\n",
              (*c)->cpu().c_str(), isa_name(isa), hz / 1e9);
  std::printf("%-15s %-4s %-5s %11s %11s %17s %17s %17s %17s %9s %9s %10s\n", "model", "site", "type", "scalar",
              isa_name(isa), "O0", "O1", "O2", "O3", "O3/scalar", "O3/simd", "interp/O3");
  std::mt19937 rng(42);
  int id = 0;
  double total_compile = 0;
  for (const Bench& b : kBenches) {
    if (quick && b.rows * b.cols > 4 * 1024 * 1024) continue;
    const Data d = make(b, rng);
    const int reps = int(std::clamp<int64_t>(int64_t(2e8) / (b.rows * b.cols), 5, 201));
    const double scalar = cycles_per_call(reference_kernels().matvec, d, b.rows, reps);
    const double simd = cycles_per_call(kernels_for(isa).matvec, d, b.rows, reps);
    std::printf("%-15s %-4s %-5s %11.0f %11.0f", b.model, b.site, dtype_name(b.type), scalar, simd);
    double o3 = 0;
    MatvecFn o3fn = nullptr;
    for (Tier t : {Tier::O0, Tier::O1, Tier::O2, Tier::O3}) {
      llvm::Expected<jit::Variant> v = (*c)->compile(jit::Spec{d.m}, t, "bench_" + std::to_string(id++), {.reassoc = reassoc});
      if (!v) {
        std::fprintf(stderr, "jit_bench: %s\n", llvm::toString(v.takeError()).c_str());
        return 1;
      }
      total_compile += v->compile_ms;
      const double cyc = cycles_per_call(v->fn, d, b.rows, reps);
      std::printf(" %9.0f (%5.1f)", cyc, v->compile_ms);
      if (t == Tier::O3) {
        o3 = cyc;
        o3fn = v->fn;
      }
    }
    // Interpreter vs O3 on the same rows: ~64K multiply-adds.
    const int64_t rows = std::max<int64_t>(1, (int64_t(1) << 16) / b.cols);
    llvm::Expected<jit::Variant> iv = (*c)->compile(jit::Spec{d.m}, Tier::Interp, "interp");
    if (!iv) {
      std::fprintf(stderr, "jit_bench: %s\n", llvm::toString(iv.takeError()).c_str());
      return 1;
    }
    const double interp = cycles_per_call(iv->fn, d, rows, 3);
    const double o3_sub = cycles_per_call(o3fn, d, rows, 51);
    std::printf(" %9.2f %9.2f %10.0f\n", scalar / o3, simd / o3, interp / o3_sub);
    std::fflush(stdout);
  }
  std::printf("total compile time %.1f ms; %" PRIu64 " B of native code\n", total_compile, (*c)->code_bytes());
  return 0;
}

#include "jit/cli.h"

#include <algorithm>
#include <chrono>
#include <sstream>
#include <vector>

#include "jit/code_report.h"
#include "jit/compiler.h"
#include "jit/runtime.h"

namespace bf::jit {

const char kCliUsage[] =
    "  --jit=MODE                  off (default) | interp | tiered | O0 | O1 | O2 | O3: matvec kernels\n"
    "                              run interpreted, tier up, or compiled at one level, by LLVM for this\n"
    "                              model's shapes and this CPU; every variant is verified first\n"
    "  --jit-start=interp|aot      tiered: the bottom tier (default interp)\n"
    "  --jit-thresholds A,B,C,D    tiered: work units (4096 multiply-adds) before O0,O1,O2,O3\n"
    "                              (default 10,100,1000,10000)\n"
    "  --jit-fuse=on|off           once wq, wk, wv (or w1, w3) all run at the top tier, compile them\n"
    "                              as one fused kernel (w1/w3 with SwiGLU): one pass (default on)\n"
    "  --jit-sync                  compile on the forward thread instead of a background thread\n"
    "  --jit-reassoc               let compiled tiers reorder float sums (vectorized f32 dot products;\n"
    "                              verified within 1e-3 of the largest output instead of bit for bit)\n"
    "  --trace-jit                 log each promotion and a summary at exit (stderr)\n"
    "  --report-code               at exit: the tiers each site ran at, LLVM's share of the executable\n"
    "                              and the bytes of native code the JIT produced (stderr)\n";

struct CliOptions {
  bool enabled = false;
  bool report_code = false;
  Options opts;
};

Cli::Cli() : o_(std::make_unique<CliOptions>()) {}
Cli::~Cli() = default;

namespace {

// "--flag=value" or "--flag value".
bool match(const std::string& flag, const char* name, cli::Args& a, std::string* value) {
  const std::string n = name;
  if (flag == n) {
    *value = a.value(flag);
    return true;
  }
  if (flag.size() > n.size() && flag.compare(0, n.size(), n) == 0 && flag[n.size()] == '=') {
    *value = flag.substr(n.size() + 1);
    return true;
  }
  return false;
}

class RuntimeSession final : public Session {
 public:
  RuntimeSession(Transformer& t, prof::SiteProfiler* p, std::unique_ptr<Runtime> r, bool trace, bool report)
      : t_(t), profiler_(p), r_(std::move(r)), trace_(trace), report_(report) {
    if (profiler_)
      profiler_->chain(r_.get(), r_.get());
    else
      t_.set_matvec_observer(r_.get());
  }
  ~RuntimeSession() override {
    if (profiler_)
      profiler_->chain(nullptr, nullptr);
    else
      t_.set_matvec_observer(nullptr);
  }
  void finish(FILE* out) override {
    drain();
    if (trace_) r_->print_summary(out);
    if (report_) r_->print_code_report(out);
  }
  void drain() override { r_->drain(); }
  double time_to_top_s() const override { return r_->time_to_top_s(); }
  double compile_ms() const override { return r_->compile_ms(); }

 private:
  Transformer& t_;
  prof::SiteProfiler* profiler_;
  std::unique_ptr<Runtime> r_;
  bool trace_, report_;
};

// --report-code without the JIT: every call runs the AOT kernels.
class ReportSession final : public Session {
 public:
  void finish(FILE* out) override {
    std::fprintf(out, "code: every matvec site ran its AOT kernel (--jit=off)\n");
    print_binary_code(out, measure_binary_code(), 0, kernel_bitcode_size());
  }
};

}  // namespace

bool Cli::parse(const std::string& flag, cli::Args& a) {
  Options& o = o_->opts;
  std::string v;
  if (match(flag, "--jit", a, &v)) {
    o_->enabled = v != "off";
    if (v == "interp") {
      o.policy = Policy::Interp;
    } else if (v == "tiered") {
      o.policy = Policy::Tiered;
    } else if (v.size() == 2 && v[0] == 'O' && v[1] >= '0' && v[1] <= '3') {
      o.policy = Policy::Fixed;
      o.fixed = Tier(size_t(Tier::O0) + size_t(v[1] - '0'));
    } else if (v != "off") {
      fail(flag, "'" + v + "' is not off, interp, tiered or O0..O3");
    }
  } else if (match(flag, "--jit-start", a, &v)) {
    if (v != "interp" && v != "aot") fail(flag, "'" + v + "' is not interp or aot");
    o.start_interp = v == "interp";
  } else if (match(flag, "--jit-thresholds", a, &v)) {
    std::istringstream in(v);
    std::string part;
    size_t i = 0;
    uint64_t prev = 0;
    while (std::getline(in, part, ',')) {
      if (i == 4) fail(flag, "expects 4 comma-separated numbers");
      o.thresholds[i] = cli::parse_u64(flag, part);
      if (o.thresholds[i] < prev) fail(flag, "thresholds must not decrease");
      prev = o.thresholds[i++];
    }
    if (i != 4) fail(flag, "expects 4 comma-separated numbers");
  } else if (match(flag, "--jit-fuse", a, &v)) {
    if (v != "on" && v != "off") fail(flag, "'" + v + "' is not on or off");
    o.fuse = v == "on";
  } else if (flag == "--jit-reassoc") {
    o.reassoc = true;
  } else if (flag == "--jit-sync") {
    o.sync = true;
  } else if (flag == "--report-code") {
    o_->report_code = true;
  } else if (flag == "--trace-jit") {
    o.trace = true;
  } else {
    return false;
  }
  return true;
}

double o3_vs_interp_speedup(const Matrix& W) {
  llvm::Expected<std::unique_ptr<Compiler>> c = Compiler::create();
  if (!c) {
    llvm::consumeError(c.takeError());
    return 0;
  }
  llvm::Expected<Variant> interp = (*c)->compile(W, Tier::Interp, "bench_interp", 0);
  llvm::Expected<Variant> o3 = (*c)->compile(W, Tier::O3, "bench_o3", 0);
  if (!interp || !o3) {
    if (!interp) llvm::consumeError(interp.takeError());
    if (!o3) llvm::consumeError(o3.takeError());
    return 0;
  }
  std::vector<float> x(size_t(W.cols)), out(size_t(W.rows));
  for (size_t i = 0; i < x.size(); i++) x[i] = float(int(i % 17) - 8) / 8.0f;
  std::vector<int8_t> q(x.size());
  std::vector<float> s(x.size());
  QuantizedVector xq{q.data(), s.data(), W.cols, matrix_group(W)};
  const bool quantized = matrix_uses_quantized_activation(W);
  if (quantized) reference_kernels().quantize(xq, x.data());
  const auto seconds = [&](MatvecFn fn, int64_t rows) {
    const auto t0 = std::chrono::steady_clock::now();
    fn(out.data(), W, x.data(), quantized ? &xq : nullptr, 0, rows);
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  const int64_t interp_rows = std::clamp<int64_t>((int64_t(1) << 21) / W.cols, 1, W.rows);
  const double interp_s = seconds(interp->fn, interp_rows);
  double o3_s = seconds(o3->fn, W.rows);
  for (int rep = 0; rep < 20; rep++) o3_s = std::min(o3_s, seconds(o3->fn, W.rows));
  return (interp_s / double(interp_rows)) / (o3_s / double(W.rows));
}

std::unique_ptr<Session> Cli::attach(Transformer& t, prof::SiteProfiler* profiler) const {
  if (!o_->enabled) return o_->report_code ? std::make_unique<ReportSession>() : nullptr;
  std::unique_ptr<Runtime> r = Runtime::create(t, o_->opts);
  if (!r) return o_->report_code ? std::make_unique<ReportSession>() : nullptr;
  return std::make_unique<RuntimeSession>(t, profiler, std::move(r), o_->opts.trace, o_->report_code);
}

}  // namespace bf::jit

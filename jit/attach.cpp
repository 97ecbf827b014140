#include "jit/attach.h"

#include <algorithm>
#include <chrono>
#include <vector>

#include "jit/code_report.h"
#include "jit/compiler.h"
#include "jit/runtime.h"

namespace bf::jit {

bool available() { return true; }

namespace {

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
  uint64_t compiles() const override { return r_->compiles(); }
  uint64_t loaded() const override { return r_->loaded(); }
  std::vector<UnitOutcome> outcomes() const override { return r_->outcomes(); }
  std::string target() const override { return r_->target(); }

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

double o3_vs_interp_speedup(const Matrix& W) {
  llvm::Expected<std::unique_ptr<Compiler>> c = Compiler::create();
  if (!c) {
    llvm::consumeError(c.takeError());
    return 0;
  }
  llvm::Expected<Variant> interp = (*c)->compile(Spec{W}, Tier::Interp, "bench_interp");
  llvm::Expected<Variant> o3 = (*c)->compile(Spec{W}, Tier::O3, "bench_o3");
  if (!interp || !o3) {
    if (!interp) llvm::consumeError(interp.takeError());
    if (!o3) llvm::consumeError(o3.takeError());
    return 0;
  }
  std::vector<float> x(size_t(W.cols)), out(size_t(W.rows));
  for (size_t i = 0; i < x.size(); i++) x[i] = float(int(i % 17) - 8) / 8.0f;
  std::vector<int8_t> q(x.size());
  std::vector<float> s(x.size());
  std::vector<int32_t> sums(x.size());
  QuantizedVector xq{q.data(), s.data(), W.cols, matrix_group(W), sums.data()};
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

std::unique_ptr<Session> attach(Transformer& t, const Options& o, prof::SiteProfiler* profiler) {
  std::unique_ptr<Runtime> r = o.policy == Policy::Off ? nullptr : Runtime::create(t, o);
  if (!r) return o.report_code ? std::make_unique<ReportSession>() : nullptr;
  return std::make_unique<RuntimeSession>(t, profiler, std::move(r), o.trace, o.report_code);
}

}  // namespace bf::jit

#include "jit/runtime.h"

#include <chrono>
#include <cinttypes>
#include <algorithm>
#include <cmath>
#include <cstring>

#include "jit/code_report.h"
#include "jit/compiler.h"
#include "kernels/cycles.h"

namespace bf::jit {

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// A variant's output against the reference's: bit for bit, or within tol when reassociation is
// allowed (tol > 0).
bool matches(float got, float want, float tol) {
  return tol > 0 ? std::fabs(got - want) <= tol : std::memcmp(&got, &want, sizeof(float)) == 0;
}

// The interpreter is ~100x slower than compiled code: verify it on a row prefix of ~16K
// multiply-adds instead of the whole matrix (the code is the same IR the compiled tiers start from).
constexpr int64_t kInterpVerifyMacs = 1 << 14;

}  // namespace

std::unique_ptr<Runtime> Runtime::create(Transformer& t, const Options& opts) {
  llvm::Expected<std::unique_ptr<Compiler>> c = Compiler::create();
  if (!c) {
    std::fprintf(opts.log, "bareflow: jit: LLVM unavailable (%s); running AOT kernels\n",
                 llvm::toString(c.takeError()).c_str());
    return nullptr;
  }
  return std::unique_ptr<Runtime>(new Runtime(t, opts, std::move(*c)));
}

Runtime::Runtime(Transformer& t, const Options& o, std::unique_ptr<Compiler> c)
    : t_(t), o_(o), compiler_(std::move(c)) {
  switch (o_.policy) {
    case Policy::Interp: plan_ = {{Tier::Interp, 0}}; break;
    case Policy::Fixed: plan_ = {{o_.fixed, 0}}; break;
    case Policy::Tiered:
      if (o_.start_interp) plan_.push_back({Tier::Interp, 0});
      for (size_t i = 0; i < 4; i++) plan_.push_back({Tier(size_t(Tier::O0) + i), o_.thresholds[i]});
      break;
  }
  for (SiteState& st : sites_) st.next_at.store(next_threshold(Tier::Aot), std::memory_order_relaxed);
  if (!o_.sync && o_.policy == Policy::Tiered) thread_ = std::thread([this] { worker(); });
  if (o_.trace)
    std::fprintf(o_.log, "jit: host cpu %s, %s compiles, kernel bitcode %zu bytes\n", compiler_->cpu().c_str(),
                 thread_.joinable() ? "background" : "synchronous", kernel_bitcode_size());
  // A kernel is specialized to layer 0's matrix of its site: a site whose layers differ stays AOT.
  for (size_t s = 0; s < kSiteCount; s++)
    if (!t_.site_uniform(Site(s))) {
      sites_[s].next_at.store(UINT64_MAX, std::memory_order_relaxed);
      if (o_.trace)
        std::fprintf(o_.log, "jit: %s stays aot: its layers differ in type or shape\n", site_name(Site(s)));
    }
}

Runtime::~Runtime() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    queue_.clear();
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  for (size_t f = 0; f < kFusionCount; f++) t_.set_fused_kernel(Fusion(f), nullptr);
  for (size_t s = 0; s < kSiteCount; s++)
    if (sites_[s].aot) t_.set_site_kernel(Site(s), sites_[s].aot);
}

Tier Runtime::target(Tier from, uint64_t units) const {
  Tier best = Tier::Aot;
  for (const auto& [tier, at] : plan_)
    if (tier > from && units >= at) best = tier;
  return best;
}

uint64_t Runtime::next_threshold(Tier from) const {
  for (const auto& [tier, at] : plan_)
    if (tier > from) return at;
  return UINT64_MAX;
}

Tier Runtime::tier_of_fused(Fusion f, FusedFn fn) const {
  const FusionState& fs = fusions_[size_t(f)];
  return fn && fs.fn.load(std::memory_order_relaxed) == fn ? Tier(fs.tier.load(std::memory_order_relaxed)) : Tier::Aot;
}

Tier Runtime::tier_of(Site s, MatvecFn fn) const {
  const SiteState& st = sites_[size_t(s)];
  for (size_t t = size_t(Tier::Interp); t < prof::kTierCount; t++)
    if (st.fns[t].load(std::memory_order_relaxed) == fn) return Tier(t);
  return Tier::Aot;
}

double Runtime::cycles_per_call(Site s, Tier t) const {
  const SiteState& st = sites_[size_t(s)];
  const uint64_t n = st.calls[size_t(t)].load(std::memory_order_relaxed);
  return n ? double(st.cycles[size_t(t)].load(std::memory_order_relaxed)) / double(n) : 0.0;
}

double Runtime::time_to_top_s() const {
  double last = 0;
  for (const SiteState& st : sites_) {
    const double at = st.top_at_s.load();
    if (at < 0) return -1;
    last = std::max(last, at);
  }
  return last;
}

void Runtime::on_matvec(Site s, MatvecFn fn, float* out, const Matrix& W, const float* x,
                        const QuantizedVector* xq, uint64_t cycles) {
  SiteState& st = sites_[size_t(s)];
  if (!st.aot) {
    st.aot = fn;
    if (start_s_.load(std::memory_order_relaxed) == 0) start_s_.store(now_s(), std::memory_order_relaxed);
  }
  const size_t ran = size_t(tier_of(s, fn));
  // Only this thread writes these counters; relaxed atomics let the compile thread read them.
  st.calls[ran].store(st.calls[ran].load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  st.cycles[ran].store(st.cycles[ran].load(std::memory_order_relaxed) + cycles, std::memory_order_relaxed);
  const uint64_t macs = uint64_t(W.rows) * uint64_t(W.cols);
  const uint64_t units = st.units.load(std::memory_order_relaxed) + (macs > kMacsPerUnit ? macs / kMacsPerUnit : 1);
  st.units.store(units, std::memory_order_relaxed);
  if (units < st.next_at.load(std::memory_order_acquire)) {
    maybe_fuse(s, x, xq);
    return;
  }

  const Tier want = target(Tier(st.tier.load(std::memory_order_acquire)), units);
  if (want == Tier::Aot) return;
  st.next_at.store(UINT64_MAX, std::memory_order_relaxed);  // until the job ends
  enqueue(Job{s, want, false, Fusion::Qkv, W}, x, xq);
}

void Runtime::enqueue(Job j, const float* x, const QuantizedVector* xq) {
  // A copy of the call's inputs: verification runs on them after the call has returned.
  j.x.assign(x, x + j.W.cols);
  j.quantized = xq != nullptr;
  if (xq) {
    j.q.assign(xq->q, xq->q + xq->n);
    j.s.assign(xq->s, xq->s + xq->n / xq->group);
  }
  // A fixed tier is compiled on the forward thread, so that every later call runs at that tier.
  if (o_.sync || o_.policy != Policy::Tiered) {
    process(j);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(j));
  }
  cv_.notify_one();
}

void Runtime::maybe_fuse(Site s, const float* x, const QuantizedVector* xq) {
  if (!o_.fuse || (s != Site::Wv && s != Site::W3)) return;
  const Fusion f = s == Site::Wv ? Fusion::Qkv : Fusion::W13;
  FusionState& fs = fusions_[size_t(f)];
  if (fs.requested.load(std::memory_order_relaxed)) return;
  const Tier top = plan_.back().first;
  if (top == Tier::Interp) return;  // fused kernels are compiled code only
  Site sites[3];
  const int n = Transformer::fusion_sites(f, sites);
  for (int i = 0; i < n; i++)
    if (site_tier(sites[i]) != top) return;
  fs.requested.store(true, std::memory_order_relaxed);
  if (!t_.fusable(f)) {
    if (o_.trace) std::fprintf(o_.log, "jit: %s not fused: its matrices differ in type or shape\n", fusion_name(f));
    return;
  }
  // x is this call's activation, which every site of the group shares.
  enqueue(Job{s, top, true, f, t_.site_matrix(sites[0])}, x, xq);
}

void Runtime::on_fused(Fusion f, FusedFn, const Matrix* const*, uint64_t cycles) {
  FusionState& fs = fusions_[size_t(f)];
  fs.calls.store(fs.calls.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  fs.cycles.store(fs.cycles.load(std::memory_order_relaxed) + cycles, std::memory_order_relaxed);
}

void Runtime::worker() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
    if (stop_) return;
    Job j = std::move(queue_.front());
    queue_.pop_front();
    running_++;
    lock.unlock();
    process(j);
    lock.lock();
    running_--;
    if (queue_.empty() && running_ == 0) idle_cv_.notify_all();
  }
}

void Runtime::drain() {
  std::unique_lock<std::mutex> lock(mu_);
  idle_cv_.wait(lock, [this] { return stop_ || (queue_.empty() && running_ == 0); });
}

bool Runtime::verify(MatvecFn fn, const Job& j, std::string* why) const {
  int64_t rows = j.W.rows;
  if (j.tier == Tier::Interp) rows = std::min<int64_t>(rows, std::max<int64_t>(1, kInterpVerifyMacs / j.W.cols));
  QuantizedVector xq{const_cast<int8_t*>(j.q.data()), const_cast<float*>(j.s.data()), j.W.cols,
                     matrix_group(j.W)};
  const QuantizedVector* xqp = j.quantized ? &xq : nullptr;
  std::vector<float> want(static_cast<size_t>(rows)), got(static_cast<size_t>(rows));
  reference_kernels().matvec(want.data(), j.W, j.x.data(), xqp, 0, rows);
  float tol = 0;
  if (o_.reassoc && j.tier != Tier::Interp) {
    for (const float w : want) tol = std::max(tol, std::fabs(w));
    tol *= kReassocTolerance;
  }
  // The whole range, then a range starting mid-matrix as a thread of the pool would call it.
  const int64_t mid = rows / 2;
  for (const int64_t r0 : {int64_t(0), mid}) {
    fn(got.data(), j.W, j.x.data(), xqp, r0, rows);
    for (int64_t r = r0; r < rows; r++) {
      // Exact unless reassociation is allowed: the JIT then keeps the reference's float operations.
      const float g = got[size_t(r - r0)], w = want[size_t(r)];
      if (!matches(g, w, tol)) {
        char buf[160];
        std::snprintf(buf, sizeof buf, "row %" PRId64 " of [%" PRId64 ", %" PRId64 "): %.9g, reference %.9g", r, r0,
                      rows, double(got[size_t(r - r0)]), double(want[size_t(r)]));
        *why = buf;
        return false;
      }
    }
  }
  return true;
}

bool Runtime::verify_fused(FusedFn fn, const Job& j, std::string* why) const {
  Site sites[3];
  const int n = Transformer::fusion_sites(j.fusion, sites);
  const Matrix* W[3] = {};
  std::vector<float> want[3], got[3];
  int64_t total = 0;
  QuantizedVector xq{const_cast<int8_t*>(j.q.data()), const_cast<float*>(j.s.data()), j.W.cols, matrix_group(j.W)};
  const QuantizedVector* xqp = j.quantized ? &xq : nullptr;
  for (int i = 0; i < n; i++) {
    W[i] = &t_.site_matrix(sites[i]);
    want[i].resize(size_t(W[i]->rows));
    reference_kernels().matvec(want[i].data(), *W[i], j.x.data(), xqp, 0, W[i]->rows);
    total += W[i]->rows;
  }
  const int outs = j.fusion == Fusion::W13 ? 1 : n;
  if (j.fusion == Fusion::W13) {
    reference_kernels().swiglu(want[0].data(), want[1].data(), int(W[0]->rows));
    total = W[0]->rows;
  }
  float tol = 0;  // as verify(): relative to the largest output of the call
  if (o_.reassoc)
    for (int i = 0; i < outs; i++)
      for (const float w : want[i]) tol = std::max(tol, kReassocTolerance * std::fabs(w));
  // The whole range, then a range starting mid-way as a thread of the pool would call it.
  for (const int64_t r0 : {int64_t(0), total / 2}) {
    float* out[3] = {};
    for (int i = 0; i < outs; i++) {
      got[i].assign(want[i].size(), std::nanf(""));
      out[i] = got[i].data();
    }
    fn(out, W, j.x.data(), xqp, r0, total);
    int64_t base = 0;
    for (int i = 0; i < outs; base += int64_t(want[i].size()), i++)
      for (int64_t r = std::max<int64_t>(r0 - base, 0); r < int64_t(want[i].size()); r++) {
        const float g = got[i][size_t(r)], w = want[i][size_t(r)];
        if (!matches(g, w, tol)) {
          char buf[160];
          std::snprintf(buf, sizeof buf, "%s row %" PRId64 " of [%" PRId64 ", %" PRId64 "): %.9g, reference %.9g",
                        site_name(sites[i]), r, r0, total, double(g), double(w));
          *why = buf;
          return false;
        }
      }
  }
  return true;
}

void Runtime::process(Job& j) {
  if (j.fused) {
    process_fused(j);
    return;
  }
  SiteState& st = sites_[size_t(j.site)];
  const Tier from = Tier(st.tier.load(std::memory_order_relaxed));
  // The site may have crossed more thresholds while the job waited: skip the tiers in between.
  j.tier = std::max(j.tier, target(from, st.units.load(std::memory_order_relaxed)));
  const char* site = site_name(j.site);
  const std::string name = std::string("bf_") + site + "_" + prof::tier_name(j.tier) + "_" + std::to_string(seq_++);
  llvm::Expected<Variant> v = compiler_->compile(j.W, j.tier, name, size_t(j.site), o_.reassoc, o_.corrupt);
  if (!v) {
    failures_++;
    std::fprintf(o_.log, "bareflow: jit: %s: %s compile failed (%s); staying on %s\n", site,
                 prof::tier_name(j.tier), llvm::toString(v.takeError()).c_str(), prof::tier_name(from));
    return;  // next_at stays UINT64_MAX: the site keeps its tier
  }
  compile_ms_.fetch_add(v->compile_ms);
  const double t0 = now_s();
  std::string why;
  if (!verify(v->fn, j, &why)) {
    rejections_++;
    std::fprintf(o_.log, "bareflow: jit: %s: %s variant rejected by verification (%s); staying on %s\n", site,
                 prof::tier_name(j.tier), why.c_str(), prof::tier_name(from));
    return;
  }
  const double verify_ms = (now_s() - t0) * 1e3;
  st.fns[size_t(j.tier)].store(v->fn, std::memory_order_release);
  t_.set_site_kernel(j.site, v->fn);
  st.tier.store(uint8_t(j.tier), std::memory_order_release);
  promotions_++;
  if (j.tier == plan_.back().first) st.top_at_s = now_s() - start_s_.load(std::memory_order_relaxed);
  if (o_.trace) {
    const double before = cycles_per_call(j.site, from);
    std::fprintf(o_.log,
                 "jit: %-10s %-6s -> %-6s compile %7.2f ms (parse %.0f, optimize %.0f), %5" PRIu64
                 " B code, verify %.2f ms; %s ran %" PRIu64 " calls at %.0f cycles/call\n",
                 site, prof::tier_name(from), prof::tier_name(j.tier), v->compile_ms, v->parse_ms, v->optimize_ms,
                 v->code_bytes, verify_ms,
                 prof::tier_name(from), st.calls[size_t(from)].load(std::memory_order_relaxed), before);
  }
  st.next_at.store(next_threshold(j.tier), std::memory_order_release);
}

void Runtime::process_fused(Job& j) {
  FusionState& fs = fusions_[size_t(j.fusion)];
  const char* group = fusion_name(j.fusion);
  Site sites[3];
  const int n = Transformer::fusion_sites(j.fusion, sites);
  Spec spec{t_.site_matrix(sites[0]), true, j.fusion};
  spec.rows2 = t_.site_matrix(sites[1]).rows;
  spec.rows3 = n > 2 ? t_.site_matrix(sites[2]).rows : 0;
  const std::string name = std::string("bf_") + group + "_" + prof::tier_name(j.tier) + "_" + std::to_string(seq_++);
  llvm::Expected<Variant> v = compiler_->compile(spec, j.tier, name, kInterpSlots, o_.reassoc, o_.corrupt || o_.corrupt_fused);
  if (!v) {
    failures_++;
    std::fprintf(o_.log, "bareflow: jit: %s: fused %s compile failed (%s); its sites stay separate\n", group,
                 prof::tier_name(j.tier), llvm::toString(v.takeError()).c_str());
    return;
  }
  compile_ms_.fetch_add(v->compile_ms);
  const double t0 = now_s();
  std::string why;
  if (!verify_fused(v->fused, j, &why)) {
    rejections_++;
    std::fprintf(o_.log, "bareflow: jit: %s: fused %s variant rejected by verification (%s); its sites stay separate\n",
                 group, prof::tier_name(j.tier), why.c_str());
    return;
  }
  const double verify_ms = (now_s() - t0) * 1e3;
  fs.tier.store(uint8_t(j.tier), std::memory_order_relaxed);
  fs.fn.store(v->fused, std::memory_order_release);
  t_.set_fused_kernel(j.fusion, v->fused);
  fs.at_s = now_s() - start_s_.load(std::memory_order_relaxed);
  promotions_++;
  if (o_.trace) {
    double before = 0;  // the separate sites' cycles per call, summed
    for (int i = 0; i < n; i++) before += cycles_per_call(sites[i], j.tier);
    std::fprintf(o_.log,
                 "jit: %-10s fused  -> %-6s compile %7.2f ms (parse %.0f, optimize %.0f), %5" PRIu64
                 " B code, verify %.2f ms; its sites ran at %.0f cycles/call together\n",
                 group, prof::tier_name(j.tier), v->compile_ms, v->parse_ms, v->optimize_ms, v->code_bytes, verify_ms,
                 before);
  }
}

void Runtime::print_code_report(FILE* out) const {
  std::fprintf(out, "code: matvec sites and the tiers that ran them (calls)\n");
  for (size_t s = 0; s < kSiteCount; s++) {
    const SiteState& st = sites_[s];
    if (!st.aot) continue;
    std::fprintf(out, "  %-11s", site_name(Site(s)));
    for (size_t t = 0; t < prof::kTierCount; t++)
      if (const uint64_t n = st.calls[t].load(std::memory_order_relaxed))
        std::fprintf(out, " %s:%" PRIu64, prof::tier_name(Tier(t)), n);
    std::fputc('\n', out);
  }
  for (size_t f = 0; f < kFusionCount; f++)
    if (const uint64_t n = fusions_[f].calls.load(std::memory_order_relaxed))
      std::fprintf(out, "  %-11s fused %s:%" PRIu64 "\n", fusion_name(Fusion(f)),
                   prof::tier_name(Tier(fusions_[f].tier.load())), n);
  print_binary_code(out, measure_binary_code(), compiler_->code_bytes(), kernel_bitcode_size());
}

void Runtime::print_summary(FILE* out) const {
  std::fprintf(out, "jit summary: host %s; %" PRIu64 " promotions, %" PRIu64 " rejected, %" PRIu64
               " failed; compile %.1f ms total; %" PRIu64 " B of native code\n",
               compiler_->cpu().c_str(), promotions(), rejections(), failures(), compile_ms_.load(),
               compiler_->code_bytes());
  std::fprintf(out, "%-11s %-6s", "site", "tier");
  for (size_t t = 0; t < prof::kTierCount; t++) std::fprintf(out, " %12s", prof::tier_name(Tier(t)));
  std::fprintf(out, "  (cycles/call)  top tier at\n");
  for (size_t s = 0; s < kSiteCount; s++) {
    const SiteState& st = sites_[s];
    if (!st.aot) continue;
    std::fprintf(out, "%-11s %-6s", site_name(Site(s)), prof::tier_name(site_tier(Site(s))));
    for (size_t t = 0; t < prof::kTierCount; t++) {
      const double c = cycles_per_call(Site(s), Tier(t));
      if (c > 0)
        std::fprintf(out, " %12.0f", c);
      else
        std::fprintf(out, " %12s", "-");
    }
    if (const double at = st.top_at_s.load(); at >= 0) std::fprintf(out, "  %.3f s", at);
    std::fputc('\n', out);
  }
  for (size_t f = 0; f < kFusionCount; f++) {
    const FusionState& fs = fusions_[f];
    if (!fs.fn.load()) continue;
    const uint64_t calls = fs.calls.load(std::memory_order_relaxed);
    Site sites[3];
    const int n = Transformer::fusion_sites(Fusion(f), sites);
    double separate = 0;
    for (int i = 0; i < n; i++) separate += cycles_per_call(sites[i], Tier(fs.tier.load()));
    std::fprintf(out, "%-11s fused %s at %.3f s: %.0f cycles/call over %" PRIu64 " calls; its sites separately %.0f\n",
                 fusion_name(Fusion(f)), prof::tier_name(Tier(fs.tier.load())), fs.at_s.load(),
                 calls ? double(fs.cycles.load()) / double(calls) : 0.0, calls, separate);
  }
}

}  // namespace bf::jit

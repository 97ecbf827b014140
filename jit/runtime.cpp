#include "jit/runtime.h"

#include <chrono>
#include <cinttypes>
#include <algorithm>
#include <cmath>
#include <cstring>

#include "jit/code_report.h"
#include "jit/compiler.h"
#include "profile/cycles.h"

namespace bf::jit {

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
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
}

Runtime::~Runtime() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    queue_.clear();
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
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
  if (units < st.next_at.load(std::memory_order_acquire)) return;

  const Tier want = target(Tier(st.tier.load(std::memory_order_acquire)), units);
  if (want == Tier::Aot) return;
  st.next_at.store(UINT64_MAX, std::memory_order_relaxed);  // until the job ends
  Job j{s, want, W, std::vector<float>(x, x + W.cols), {}, {}, xq != nullptr};
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
      const bool same = tol > 0 ? std::fabs(g - w) <= tol : std::memcmp(&g, &w, sizeof(float)) == 0;
      if (!same) {
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

void Runtime::process(Job& j) {
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
                 "jit: %-10s %-6s -> %-6s compile %7.2f ms, %5" PRIu64 " B code, verify %.2f ms; %s ran %" PRIu64
                 " calls at %.0f cycles/call\n",
                 site, prof::tier_name(from), prof::tier_name(j.tier), v->compile_ms, v->code_bytes, verify_ms,
                 prof::tier_name(from), st.calls[size_t(from)].load(std::memory_order_relaxed), before);
  }
  st.next_at.store(next_threshold(j.tier), std::memory_order_release);
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
}

}  // namespace bf::jit

#include "jit/runtime.h"

#include <algorithm>
#include <cassert>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstring>

#include "jit/code_report.h"
#include "jit/compiler.h"
#include "jit/test_hooks.h"
#include "kernels/cycles.h"

namespace bf::jit {

static_assert(kTierCount <= prof::kMaxVariants, "the profiler counts every tier as a variant");

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

const char* state_name(State s) {
  switch (s) {
    case State::Counting: return "counting";
    case State::Queued: return "queued";
    case State::Compiling: return "compiling";
    case State::Top: return "top";
    case State::Failed: return "compile failed";
    case State::Rejected: return "rejected";
    case State::NotUniform: return "not uniform";
    case State::Off: return "off";
  }
  return "?";
}

std::unique_ptr<Runtime> Runtime::create(Transformer& t, const Options& opts, const TestHooks* hooks) {
  assert(opts.policy != Policy::Off);
  llvm::Expected<std::unique_ptr<Compiler>> c = Compiler::create(opts.target_cpu, opts.target_features);
  if (!c) {
    std::fprintf(opts.log, "bareflow: jit: LLVM unavailable (%s); running AOT kernels\n",
                 llvm::toString(c.takeError()).c_str());
    return nullptr;
  }
  return std::unique_ptr<Runtime>(new Runtime(t, opts, std::move(*c), hooks));
}

Runtime::Runtime(Transformer& t, const Options& o, std::unique_ptr<Compiler> c, const TestHooks* hooks)
    : t_(t), o_(o), compiler_(std::move(c)), hooks_(hooks) {
  switch (o_.policy) {
    case Policy::Off: assert(false && "Runtime::create with Policy::Off"); break;
    case Policy::Interp: plan_ = {{Tier::Interp, 0}}; break;
    case Policy::Fixed: plan_ = {{o_.fixed, 0}}; break;
    case Policy::Tiered:
      if (o_.start_interp) plan_.push_back({Tier::Interp, 0});
      for (size_t i = 0; i < 4; i++) plan_.push_back({Tier(size_t(Tier::O0) + i), o_.thresholds[i]});
      break;
  }
  assert(!plan_.empty() && plan_.back().first > Tier::Aot && plan_.back().first < Tier::Count);
  if (!o_.sync && o_.policy == Policy::Tiered) thread_ = std::thread([this] { worker(); });
  if (o_.trace)
    std::fprintf(o_.log, "jit: host cpu %s, %s compiles, kernel bitcode %zu bytes\n", compiler_->cpu().c_str(),
                 thread_.joinable() ? "background" : "synchronous", kernel_bitcode_size());
  for (size_t s = 0; s < kSiteCount; s++) {
    units_[s].aot = t_.site_kernel(Site(s));
    units_[s].next_at.store(next_threshold(Tier::Aot), std::memory_order_relaxed);
    // A kernel is specialized to layer 0's matrix of its site: a site whose layers differ stays AOT.
    if (!t_.site_uniform(Site(s))) {
      units_[s].state.store(State::NotUniform, std::memory_order_relaxed);
      if (o_.trace)
        std::fprintf(o_.log, "jit: %s stays aot: its layers differ in type or shape\n", site_name(Site(s)));
    }
  }
  for (size_t f = 0; f < kFusionCount; f++) {
    Unit& g = units_[kSiteCount + f];
    if (!o_.fuse || plan_.back().first == Tier::Interp) {  // fused kernels are compiled code only
      g.state.store(State::Off, std::memory_order_relaxed);
    } else if (!t_.fusable(Fusion(f))) {
      g.state.store(State::NotUniform, std::memory_order_relaxed);
      if (o_.trace)
        std::fprintf(o_.log, "jit: %s not fused: its matrices differ in type or shape\n", fusion_name(Fusion(f)));
    }
  }
  if (o_.cache && o_.policy != Policy::Interp) warm_start();
}

std::string Runtime::cache_key(size_t unit, Tier tier) const {
  return std::string(unit_name(unit)) + " " + compiler_->key_of(spec_of(unit), tier, o_.reassoc);
}

void Runtime::warm_start() {
  const Tier top = plan_.back().first;
  for (size_t unit = 0; unit < kUnitCount; unit++) {
    Unit& u = units_[unit];
    if (u.state.load(std::memory_order_relaxed) != State::Counting) continue;  // not uniform, fusion off
    const Tier learned = o_.cache->learned_tier(unit_name(unit));
    if (is_group(unit) && learned == Tier::Aot) continue;  // never fused before
    // A fixed policy's tier is known; a tiered one starts where the last run ended (groups: fused).
    const Tier want = o_.policy == Policy::Fixed || is_group(unit) ? top : std::min(learned, top);
    if (want < Tier::O0) continue;  // the interpreter keeps no object, and is left early anyway
    // The first call queues the learned tier's job (a group's: once its sites are at the top); the
    // job takes the stored variant instead of compiling and verifies it like a new one.
    // The job waits for the site's first call of the second forward step: the first token runs
    // the AOT kernels (as fast, and bit-identical), with no check or link competing for the cores.
    if (!is_group(unit)) {
      u.learned = want;
      const Site site = Site(unit);
      const Matrix& W = t_.site_matrix(site);
      const uint64_t macs = uint64_t(W.rows) * uint64_t(W.cols);
      const uint64_t per_call = macs > kMacsPerUnit ? macs / kMacsPerUnit : 1;
      const uint64_t calls_per_step = site == Site::Classifier ? 1 : uint64_t(t_.config().n_layers);
      u.next_at.store(per_call * (calls_per_step + 1), std::memory_order_relaxed);
    }
    const std::string key = cache_key(unit, want);
    const std::vector<uint8_t>* object = o_.cache->object(key);
    if (!object) continue;
    llvm::Expected<Variant> v = compiler_->load(spec_of(unit), want, variant_symbol(unit_name(unit), want, key), *object);
    if (!v) {
      std::fprintf(o_.log, "bareflow: jit: %s: the stored %s variant does not link (%s); compiling it again\n",
                   unit_name(unit), tier_name(want), llvm::toString(v.takeError()).c_str());
      continue;
    }
    u.stored = std::make_unique<Variant>(std::move(*v));
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
    if (units_[s].aot) t_.set_site_kernel(Site(s), units_[s].aot);
  // The compiler, destroyed after this, frees every variant still alive.
}

const char* Runtime::unit_name(size_t unit) const {
  assert(unit < kUnitCount);
  return is_group(unit) ? fusion_name(Fusion(unit - kSiteCount)) : site_name(Site(unit));
}

Status Runtime::status_of(size_t unit) const {
  assert(unit < kUnitCount);
  const Unit& u = units_[unit];
  std::lock_guard<std::mutex> lock(mu_);
  return {u.state.load(std::memory_order_acquire), Tier(u.tier.load(std::memory_order_acquire)), u.why};
}

std::vector<std::string> Runtime::variant_names() const {
  std::vector<std::string> names;
  for (size_t t = 0; t < kTierCount; t++) names.emplace_back(tier_name(Tier(t)));
  return names;
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
  const Unit& g = units_[kSiteCount + size_t(f)];
  return fn && g.fused.load(std::memory_order_relaxed) == fn ? Tier(g.tier.load(std::memory_order_relaxed)) : Tier::Aot;
}

Tier Runtime::tier_of(Site s, MatvecFn fn) const {
  assert(size_t(s) < kSiteCount);
  const Unit& u = units_[size_t(s)];
  for (size_t t = size_t(Tier::Interp); t < kTierCount; t++)
    if (u.fns[t].load(std::memory_order_relaxed) == fn) return Tier(t);
  return Tier::Aot;
}

double Runtime::cycles_per_call(Site s, Tier t) const {
  assert(size_t(s) < kSiteCount && size_t(t) < kTierCount);
  const Unit& u = units_[size_t(s)];
  const uint64_t n = u.calls[size_t(t)].load(std::memory_order_relaxed);
  return n ? double(u.cycles[size_t(t)].load(std::memory_order_relaxed)) / double(n) : 0.0;
}

double Runtime::time_to_top_s() const {
  double last = 0;
  for (size_t s = 0; s < kSiteCount; s++) {
    const double at = units_[s].top_at_s.load();
    if (at < 0) return -1;
    last = std::max(last, at);
  }
  return last;
}

void Runtime::advance(size_t unit, State from, State to, const std::string& why) {
  assert(unit < kUnitCount);
  Unit& u = units_[unit];
  if (!why.empty()) {
    std::lock_guard<std::mutex> lock(mu_);
    u.why = why;
  }
  State was = from;
  const bool ok = u.state.compare_exchange_strong(was, to, std::memory_order_acq_rel);
  assert(ok && "a unit's state changed behind its owner's back");
  (void)ok;
}

void Runtime::on_matvec(Site s, MatvecFn fn, float* out, const Matrix& W, const float* x,
                        const QuantizedVector* xq, uint64_t cycles) {
  assert(size_t(s) < kSiteCount);
  Unit& u = units_[size_t(s)];
  if (start_s_.load(std::memory_order_relaxed) == 0) start_s_.store(now_s(), std::memory_order_relaxed);
  const size_t ran = size_t(tier_of(s, fn));
  // Only this thread writes these counters; relaxed atomics let the compile thread read them.
  u.calls[ran].store(u.calls[ran].load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  u.cycles[ran].store(u.cycles[ran].load(std::memory_order_relaxed) + cycles, std::memory_order_relaxed);
  const uint64_t macs = uint64_t(W.rows) * uint64_t(W.cols);
  const uint64_t units = u.units.load(std::memory_order_relaxed) + (macs > kMacsPerUnit ? macs / kMacsPerUnit : 1);
  u.units.store(units, std::memory_order_relaxed);
  retire_replaced();
  if (u.state.load(std::memory_order_acquire) != State::Counting || units < u.next_at.load(std::memory_order_relaxed)) {
    maybe_fuse(s, x, xq);
    return;
  }
  const Tier from = Tier(u.tier.load(std::memory_order_relaxed));
  const Tier want = std::max(target(from, units), u.learned > from ? u.learned : Tier::Aot);
  assert(want != Tier::Aot && "next_at is the next tier's threshold");
  advance(size_t(s), State::Counting, State::Queued);
  enqueue(Job{.unit = size_t(s), .tier = want, .W = W}, x, xq);
}

void Runtime::on_fused(Fusion f, FusedFn, float* const* out, const Matrix* const* W, const float* x,
                       const QuantizedVector* xq, uint64_t cycles) {
  Unit& g = units_[kSiteCount + size_t(f)];
  if (start_s_.load(std::memory_order_relaxed) == 0) start_s_.store(now_s(), std::memory_order_relaxed);
  const size_t t = g.tier.load(std::memory_order_relaxed);
  g.calls[t].store(g.calls[t].load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  g.cycles[t].store(g.cycles[t].load(std::memory_order_relaxed) + cycles, std::memory_order_relaxed);
  retire_replaced();
}

void Runtime::maybe_fuse(Site s, const float* x, const QuantizedVector* xq) {
  if (s != Site::Wv && s != Site::W3) return;
  const Fusion f = s == Site::Wv ? Fusion::Qkv : Fusion::W13;
  const size_t group = kSiteCount + size_t(f);
  if (units_[group].state.load(std::memory_order_relaxed) != State::Counting) return;
  Site sites[kMaxFusionSites];
  const int n = fusion_sites(f, sites);
  for (int i = 0; i < n; i++)
    if (units_[size_t(sites[i])].state.load(std::memory_order_acquire) != State::Top) return;
  advance(group, State::Counting, State::Queued);
  // x is this call's activation, which every site of the group shares.
  enqueue(Job{.unit = group, .tier = plan_.back().first, .W = t_.site_matrix(sites[0])}, x, xq);
}

void Runtime::enqueue(Job j, const float* x, const QuantizedVector* xq) {
  j.x.assign(x, x + j.W.cols);
  j.quantized = xq != nullptr;
  if (xq) {
    j.q.assign(xq->q, xq->q + xq->n);
    j.s.assign(xq->s, xq->s + xq->n / xq->group);
    if (xq->sums) j.sums.assign(xq->sums, xq->sums + xq->n / xq->group);
  }
  // A fixed tier is compiled on the forward thread, so that every later call runs at that tier.
  if (!thread_.joinable()) {
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
    cv_.wait(lock, [this] { return stop_ || !queue_.empty() || !retired_.empty(); });
    if (stop_) return;
    running_++;
    if (!retired_.empty()) {
      const std::vector<uint64_t> ids = std::move(retired_);
      retired_.clear();
      lock.unlock();
      free_variants(ids);
    } else {
      Job j = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      process(j);
    }
    lock.lock();
    running_--;
    if (queue_.empty() && retired_.empty() && running_ == 0) idle_cv_.notify_all();
  }
}

void Runtime::drain() {
  std::unique_lock<std::mutex> lock(mu_);
  if (!thread_.joinable()) return;
  idle_cv_.wait(lock, [this] { return stop_ || (queue_.empty() && retired_.empty() && running_ == 0); });
}

// A replaced variant may still run until the call that loaded it returns (the pool may be inside
// it). Every observer call comes after its matvec's pool pass, with no kernel running anywhere:
// variants replaced before it can go. The compile thread frees them, so that this thread never
// waits for the compiler's lock.
void Runtime::retire_replaced() {
  if (!replaced_.load(std::memory_order_acquire)) return;
  std::vector<uint64_t> ids;
  {
    std::lock_guard<std::mutex> lock(mu_);
    replaced_.store(false, std::memory_order_relaxed);
    for (size_t s = 0; s < kSiteCount; s++) {
      Unit& u = units_[s];
      const size_t cur = u.tier.load(std::memory_order_relaxed);
      for (size_t t = size_t(Tier::Interp); t < cur; t++)
        if (u.fns[t].load(std::memory_order_relaxed)) {
          u.fns[t].store(nullptr, std::memory_order_relaxed);  // the address may be reused by new code
          ids.push_back(u.ids[t]);
          u.ids[t] = 0;
        }
    }
    if (thread_.joinable()) {
      retired_.insert(retired_.end(), ids.begin(), ids.end());
      ids.clear();
    }
  }
  if (thread_.joinable())
    cv_.notify_one();
  else
    free_variants(ids);
}

void Runtime::free_variants(const std::vector<uint64_t>& ids) {
  for (const uint64_t id : ids) {
    if (llvm::Error e = compiler_->free(id)) {
      std::fprintf(o_.log, "bareflow: jit: freeing a replaced variant failed (%s)\n", llvm::toString(std::move(e)).c_str());
      continue;
    }
    freed_++;
  }
}

Spec Runtime::spec_of(size_t unit) const {
  if (!is_group(unit)) return Spec{t_.site_matrix(Site(unit))};
  const Fusion f = Fusion(unit - kSiteCount);
  Site sites[kMaxFusionSites];
  const int n = fusion_sites(f, sites);
  Spec spec{t_.site_matrix(sites[0]), true, f};
  spec.rows2 = t_.site_matrix(sites[1]).rows;
  spec.rows3 = n > 2 ? t_.site_matrix(sites[2]).rows : 0;
  return spec;
}

std::vector<float> Runtime::expected(size_t unit, const Matrix* const* W, int& n, const float* x,
                                     const QuantizedVector* xq, const Kernels& kernels, int64_t max_rows,
                                     int64_t* base) const {
  std::vector<float> want;
  for (int i = 0; i < n; i++) {
    const int64_t rows = std::min(W[i]->rows, max_rows);
    base[i] = int64_t(want.size());
    want.resize(want.size() + size_t(rows));
    kernels.matvec(want.data() + base[i], *W[i], x, xq, 0, rows);
  }
  if (is_group(unit) && Fusion(unit - kSiteCount) == Fusion::W13) {
    kernels.swiglu(want.data(), want.data() + base[1], int(base[1]));
    want.resize(size_t(base[1]));
    n = 1;
  }
  return want;
}

float Runtime::tolerance(const std::vector<float>& want, Tier tier) const {
  if (!o_.reassoc || tier == Tier::Interp) return 0;
  float tol = 0;
  for (const float w : want) tol = std::max(tol, std::fabs(w));
  return tol * kReassocTolerance;
}

std::string Runtime::verify(const Job& j, const Variant& v, const Kernels& against) const {
  const bool group = is_group(j.unit);
  Site sites[kMaxFusionSites] = {Site(j.unit)};
  const Matrix* W[kMaxFusionSites] = {&j.W};
  int n = 1;
  if (group) {
    n = fusion_sites(Fusion(j.unit - kSiteCount), sites);
    for (int i = 0; i < n; i++) W[i] = &t_.site_matrix(sites[i]);
  }
  QuantizedVector xq{const_cast<int8_t*>(j.q.data()), const_cast<float*>(j.s.data()), j.W.cols, matrix_group(j.W),
                     j.sums.empty() ? nullptr : const_cast<int32_t*>(j.sums.data())};
  const QuantizedVector* xqp = j.quantized ? &xq : nullptr;
  // The reference's outputs in the variant's row space: the matrices' rows stacked (W13: w1's rows
  // after swiglu), starting at base[i].
  int64_t base[kMaxFusionSites] = {};
  const int64_t max_rows = j.tier == Tier::Interp ? std::max<int64_t>(1, kInterpVerifyMacs / j.W.cols) : INT64_MAX;
  const std::vector<float> want = expected(j.unit, W, n, j.x.data(), xqp, against, max_rows, base);
  const float tol = tolerance(want, j.tier);
  // The whole range, then a range starting mid-way as a thread of the pool would call it.
  const int64_t total = int64_t(want.size());
  std::vector<float> got;
  for (const int64_t r0 : {int64_t(0), total / 2}) {
    got.assign(want.size(), std::nanf(""));
    if (group) {
      float* out[kMaxFusionSites] = {};
      for (int i = 0; i < n; i++) out[i] = got.data() + base[i];
      v.fused(out, W, j.x.data(), xqp, r0, total);
    } else {
      v.fn(got.data() + r0, *W[0], j.x.data(), xqp, r0, total);
    }
    for (int64_t r = r0; r < total; r++) {
      if (matches(got[size_t(r)], want[size_t(r)], tol)) continue;
      const int i = int(std::upper_bound(base, base + n, r) - base) - 1;
      char buf[160];
      std::snprintf(buf, sizeof buf, "%s row %" PRId64 " of [%" PRId64 ", %" PRId64 "): %.9g, reference %.9g",
                    site_name(sites[i]), r - base[i], r0, total, double(got[size_t(r)]), double(want[size_t(r)]));
      return buf;
    }
  }
  return "";
}

void Runtime::install(size_t unit, const Variant& v, const std::string& key, bool loaded) {
  Unit& u = units_[unit];
  const size_t t = size_t(v.tier);
  std::lock_guard<std::mutex> lock(mu_);
  u.ids[t] = v.id;
  u.key = v.tier == Tier::Interp ? "" : key;
  u.object = v.object;
  u.loaded = loaded;
  if (is_group(unit)) {
    u.tier.store(uint8_t(t), std::memory_order_relaxed);
    u.fused.store(v.fused, std::memory_order_release);
    t_.set_fused_kernel(Fusion(unit - kSiteCount), v.fused);
    return;
  }
  const Tier from = Tier(u.tier.load(std::memory_order_relaxed));
  assert(v.tier > from && !u.fns[t].load(std::memory_order_relaxed));
  u.fns[t].store(v.fn, std::memory_order_release);
  t_.set_site_kernel(Site(unit), v.fn);
  u.tier.store(uint8_t(t), std::memory_order_release);
  if (from != Tier::Aot) replaced_.store(true, std::memory_order_release);
}

void Runtime::process(Job& j) {
  assert(j.unit < kUnitCount);
  Unit& u = units_[j.unit];
  const bool group = is_group(j.unit);
  advance(j.unit, State::Queued, State::Compiling);
  const Tier from = Tier(u.tier.load(std::memory_order_relaxed));
  // A site may have crossed more thresholds while the job waited: skip the tiers in between.
  if (!group) j.tier = std::max(j.tier, target(from, u.units.load(std::memory_order_relaxed)));
  assert(j.tier > from && j.tier < Tier::Count);
  const Tier top = plan_.back().first;
  const char* name = unit_name(j.unit);
  const std::string what = (group ? "fused " : "") + std::string(tier_name(j.tier));
  const std::string stays = group ? "its sites stay separate" : std::string("staying on ") + tier_name(from);
  const bool miscompile = hooks_ && (group ? hooks_->miscompile_fused(Fusion(j.unit - kSiteCount), j.tier)
                                           : hooks_->miscompile_site(Site(j.unit), j.tier));
  const std::string key = cache_key(j.unit, j.tier);
  // A variant loaded from the store at this tier: verified as a compiled one is; if it fails, it is
  // dropped (the store forgets its key) and compiled again.
  std::unique_ptr<Variant> stored = std::move(u.stored);
  if (stored && stored->tier == j.tier) {
    const double t0 = now_s();
    // Against the engine's SIMD kernels (bit-identical to the reference, ~10x faster): this check
    // runs beside the second and later tokens of every warm run.
    if (const std::string why = verify(j, *stored, t_.kernels()); why.empty()) {
      const double verify_ms = (now_s() - t0) * 1e3;
      install(j.unit, *stored, key, /*loaded=*/true);
      loaded_++;
      // A loaded unit counts as at its tier from the start: until now (the second forward step)
      // the AOT kernel ran in its place, with the same output.
      if (group || j.tier == top) u.top_at_s = 0;
      if (o_.trace)
        std::fprintf(o_.log, "jit: %-10s %s%s from the store, %" PRIu64 " B code, linked in %.2f ms, verify %.2f ms\n",
                     name, group ? "fused " : "", tier_name(j.tier), stored->code_bytes, stored->compile_ms, verify_ms);
      if (group || j.tier == top) {
        advance(j.unit, State::Compiling, State::Top);
      } else {
        u.next_at.store(next_threshold(j.tier), std::memory_order_relaxed);
        advance(j.unit, State::Compiling, State::Counting);
      }
      return;
    } else {
      rejections_++;
      std::fprintf(o_.log, "bareflow: jit: %s: the stored %s variant was rejected by verification (%s); compiling it again\n",
                   name, what.c_str(), why.c_str());
      free_variants({stored->id});
      std::lock_guard<std::mutex> lock(mu_);
      u.rejected_key = key;
    }
  } else if (stored) {
    free_variants({stored->id});  // the job wants another tier (thresholds crossed meanwhile)
  }
  compiles_++;
  llvm::Expected<Variant> v = compiler_->compile(spec_of(j.unit), j.tier, variant_symbol(name, j.tier, key),
                                                 {.interp_slot = j.unit, .reassoc = o_.reassoc, .miscompile = miscompile});
  if (!v) {
    failures_++;
    const std::string why = llvm::toString(v.takeError());
    std::fprintf(o_.log, "bareflow: jit: %s: %s compile failed (%s); %s\n", name, what.c_str(), why.c_str(),
                 stays.c_str());
    advance(j.unit, State::Compiling, State::Failed, why);
    return;
  }
  compile_ms_.fetch_add(v->compile_ms);
  const double t0 = now_s();
  if (const std::string why = verify(j, *v, reference_kernels()); !why.empty()) {
    rejections_++;
    std::fprintf(o_.log, "bareflow: jit: %s: %s variant rejected by verification (%s); %s\n", name, what.c_str(),
                 why.c_str(), stays.c_str());
    free_variants({v->id});  // never installed: only verification ran it
    advance(j.unit, State::Compiling, State::Rejected, why);
    return;
  }
  const double verify_ms = (now_s() - t0) * 1e3;
  // A variant verification passed only because of a test hook's miscompile never reaches the store.
  install(j.unit, *v, miscompile ? "" : key, /*loaded=*/false);
  promotions_++;
  if (group || j.tier == top) u.top_at_s = now_s() - start_s_.load(std::memory_order_relaxed);
  if (o_.trace && group) {
    Site sites[kMaxFusionSites];
    const int n = fusion_sites(Fusion(j.unit - kSiteCount), sites);
    double before = 0;  // the separate sites' cycles per call, summed
    for (int i = 0; i < n; i++) before += cycles_per_call(sites[i], j.tier);
    std::fprintf(o_.log,
                 "jit: %-10s fused  -> %-6s compile %7.2f ms (parse %.0f, optimize %.0f), %5" PRIu64
                 " B code, verify %.2f ms; its sites ran at %.0f cycles/call together\n",
                 name, tier_name(j.tier), v->compile_ms, v->parse_ms, v->optimize_ms, v->code_bytes, verify_ms, before);
  } else if (o_.trace) {
    std::fprintf(o_.log,
                 "jit: %-10s %-6s -> %-6s compile %7.2f ms (parse %.0f, optimize %.0f), %5" PRIu64
                 " B code, verify %.2f ms; %s ran %" PRIu64 " calls at %.0f cycles/call\n",
                 name, tier_name(from), tier_name(j.tier), v->compile_ms, v->parse_ms, v->optimize_ms, v->code_bytes,
                 verify_ms, tier_name(from), u.calls[size_t(from)].load(std::memory_order_relaxed),
                 cycles_per_call(Site(j.unit), from));
  }
  if (group || j.tier == top) {
    advance(j.unit, State::Compiling, State::Top);
  } else {
    u.next_at.store(next_threshold(j.tier), std::memory_order_relaxed);
    advance(j.unit, State::Compiling, State::Counting);  // releases next_at to the forward thread
  }
}

bool Runtime::ran(size_t unit) const {
  const Unit& u = units_[unit];
  for (size_t t = 0; t < kTierCount; t++)
    if (u.calls[t].load(std::memory_order_relaxed)) return true;
  return false;
}

std::string Runtime::target() const { return compiler_->cpu() + " " + compiler_->features(); }

std::vector<UnitOutcome> Runtime::outcomes() const {
  std::vector<UnitOutcome> all;
  for (size_t unit = 0; unit < kUnitCount; unit++) {
    const Unit& u = units_[unit];
    const Status st = status_of(unit);
    if (!ran(unit) && st.tier == Tier::Aot) continue;
    UnitOutcome o;
    o.name = unit_name(unit);
    o.state = state_name(st.state);
    o.why = st.why;
    o.tier = st.tier;
    for (size_t t = 0; t < kTierCount; t++) {
      o.calls += u.calls[t].load(std::memory_order_relaxed);
      o.cycles += u.cycles[t].load(std::memory_order_relaxed);
    }
    if (st.tier != Tier::Aot) {
      const Spec sp = spec_of(unit);
      char buf[160];
      std::snprintf(buf, sizeof buf, "%s %s g%d %" PRId64 "x%" PRId64 "%s on %s", is_group(unit) ? "fused" : "matvec",
                    dtype_name(sp.W.type), int(sp.W.group), sp.W.rows + sp.rows2 + sp.rows3, sp.W.cols,
                    o_.reassoc && st.tier != Tier::Interp ? " reassoc" : "", compiler_->cpu().c_str());
      o.spec = buf;
    }
    std::lock_guard<std::mutex> lock(mu_);
    o.key = u.key;
    if (!u.key.empty()) o.symbol = variant_symbol(o.name, st.tier, u.key);
    o.object = u.object;
    o.loaded = u.loaded;
    o.rejected_key = u.rejected_key;
    all.push_back(std::move(o));
  }
  return all;
}

void Runtime::print_code_report(FILE* out) const {
  std::fprintf(out, "code: matvec sites and the tiers that ran them (calls)\n");
  for (size_t s = 0; s < kSiteCount; s++) {
    const Unit& u = units_[s];
    if (!ran(s)) continue;
    std::fprintf(out, "  %-11s", site_name(Site(s)));
    for (size_t t = 0; t < kTierCount; t++)
      if (const uint64_t n = u.calls[t].load(std::memory_order_relaxed))
        std::fprintf(out, " %s:%" PRIu64, tier_name(Tier(t)), n);
    std::fputc('\n', out);
  }
  for (size_t f = 0; f < kFusionCount; f++) {
    const Unit& g = units_[kSiteCount + f];
    const size_t t = g.tier.load();
    if (const uint64_t n = g.calls[t].load(std::memory_order_relaxed))
      std::fprintf(out, "  %-11s fused %s:%" PRIu64 "\n", fusion_name(Fusion(f)), tier_name(Tier(t)), n);
  }
  print_binary_code(out, measure_binary_code(), compiler_->code_bytes(), kernel_bitcode_size());
}

void Runtime::print_summary(FILE* out) const {
  std::fprintf(out, "jit summary: host %s; %" PRIu64 " promotions, %" PRIu64 " rejected, %" PRIu64
               " failed; compile %.1f ms total; %" PRIu64 " B of native code; %" PRIu64 " replaced variants freed\n",
               compiler_->cpu().c_str(), promotions(), rejections(), failures(), compile_ms_.load(),
               compiler_->code_bytes(), freed());
  std::fprintf(out, "%-11s %-6s", "site", "tier");
  for (size_t t = 0; t < kTierCount; t++) std::fprintf(out, " %12s", tier_name(Tier(t)));
  std::fprintf(out, "  (cycles/call)  top tier at  state\n");
  for (size_t s = 0; s < kSiteCount; s++) {
    if (!ran(s) && units_[s].tier.load() == uint8_t(Tier::Aot)) continue;
    const Status st = status(Site(s));
    std::fprintf(out, "%-11s %-6s", site_name(Site(s)), tier_name(st.tier));
    for (size_t t = 0; t < kTierCount; t++) {
      const double c = cycles_per_call(Site(s), Tier(t));
      if (c > 0)
        std::fprintf(out, " %12.0f", c);
      else
        std::fprintf(out, " %12s", "-");
    }
    if (const double at = units_[s].top_at_s.load(); at >= 0)
      std::fprintf(out, "  %9.3f s", at);
    else
      std::fprintf(out, "  %11s", "-");
    std::fprintf(out, "  %s%s%s%s\n", state_name(st.state), st.why.empty() ? "" : " (", st.why.c_str(),
                 st.why.empty() ? "" : ")");
  }
  for (size_t f = 0; f < kFusionCount; f++) {
    const Unit& g = units_[kSiteCount + f];
    const Status st = status(Fusion(f));
    if (!g.fused.load()) {
      std::fprintf(out, "%-11s not fused: %s%s%s%s\n", fusion_name(Fusion(f)), state_name(st.state),
                   st.why.empty() ? "" : " (", st.why.c_str(), st.why.empty() ? "" : ")");
      continue;
    }
    const uint64_t calls = g.calls[size_t(st.tier)].load(std::memory_order_relaxed);
    const uint64_t cycles = g.cycles[size_t(st.tier)].load(std::memory_order_relaxed);
    Site sites[kMaxFusionSites];
    const int n = fusion_sites(Fusion(f), sites);
    double separate = 0;
    for (int i = 0; i < n; i++) separate += cycles_per_call(sites[i], st.tier);
    std::fprintf(out, "%-11s fused %s at %.3f s: %.0f cycles/call over %" PRIu64 " calls; its sites separately %.0f\n",
                 fusion_name(Fusion(f)), tier_name(st.tier), g.top_at_s.load(),
                 calls ? double(cycles) / double(calls) : 0.0, calls, separate);
  }
}

}  // namespace bf::jit

// Tiered JIT for the forward pass's matvec call sites: counts the work each site does, compiles it
// (LLVM interpreter -> ORC LLJIT O0 -> O1 -> O2 -> O3, specialized to the site's matrix and the host
// CPU) when its counter crosses a threshold, checks each new variant against the reference kernel
// on the live inputs of the call that triggered it, and swaps it in atomically; then fuses q/k/v
// and w1/w3 once their sites all run at the top tier. Compiles run on a background thread, or
// inline on the forward thread (synchronous mode, fixed tiers).
//
// Sites and fused groups are both "units": one state machine (State), one job type and one
// compile -> verify -> install path.
//
// One Runtime per process: interpreted variants live in per-site global slots.
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "engine/transformer.h"
#include "jit/code_cache.h"
#include "jit/options.h"
#include "profile/site_profiler.h"

namespace bf::jit {

class Compiler;
class TestHooks;
struct Spec;
struct Variant;

// Where a site or a fused group stands. The settled states (Top and after) say why it moves no
// further: what --trace-jit prints and the persistent store is to record.
enum class State : uint8_t {
  Counting,    // site: runs at its tier, counting work toward the next threshold;
               // group: waits for its sites to reach the policy's top tier
  Queued,      // a compile job waits for the compile thread
  Compiling,   // its job is being compiled, verified and installed
  Top,         // settled: at the policy's top tier (a group: its fused kernel runs)
  Failed,      // settled: LLVM failed to compile the next variant; stays on its tier
  Rejected,    // settled: verification rejected the next variant; stays on its tier
  NotUniform,  // settled: a site whose layers differ in type or shape (stays AOT), or a group whose
               // matrices do (its sites stay separate)
  Off,         // settled, groups only: fusion is off (--jit-fuse=off, or the interpreter policy)
};
const char* state_name(State s);

struct Status {
  State state = State::Counting;
  Tier tier = Tier::Aot;  // the tier running (a group: its fused kernel's, Aot until installed)
  std::string why;        // Failed, Rejected: LLVM's error or the first mismatching row
};

class Runtime final : public MatvecObserver, public prof::VariantSource {
 public:
  // Null, after one line on opts.log, when LLVM cannot serve this host: the engine stays on AOT.
  // `t` must outlive the Runtime; opts.policy must not be Off. `hooks` (tests only) may miscompile.
  static std::unique_ptr<Runtime> create(Transformer& t, const Options& opts, const TestHooks* hooks = nullptr);
  // Stops compiling and puts the AOT kernels back.
  ~Runtime();

  void on_matvec(Site s, MatvecFn fn, float* out, const Matrix& W, const float* x, const QuantizedVector* xq,
                 uint64_t cycles) override;
  void on_fused(Fusion f, FusedFn fn, float* const* out, const Matrix* const* W, const float* x,
                const QuantizedVector* xq, uint64_t cycles) override;
  // The tier whose variant `fn` is (Aot if none of the live ones).
  Tier tier_of(Site s, MatvecFn fn) const;
  Tier tier_of_fused(Fusion f, FusedFn fn) const;
  // prof::VariantSource: variant number = Tier.
  uint8_t variant_of(Site s, MatvecFn fn) const override { return uint8_t(tier_of(s, fn)); }
  uint8_t variant_of_fused(Fusion f, FusedFn fn) const override { return uint8_t(tier_of_fused(f, fn)); }
  std::vector<std::string> variant_names() const override;

  // Blocks until no compile (or freeing of replaced code) is queued or running.
  void drain();

  Status status(Site s) const { return status_of(size_t(s)); }
  Status status(Fusion f) const { return status_of(kSiteCount + size_t(f)); }
  Tier site_tier(Site s) const { return Tier(units_[size_t(s)].tier.load(std::memory_order_acquire)); }
  // The group's fused kernel, null until one is installed.
  FusedFn fused_kernel(Fusion f) const {
    return units_[kSiteCount + size_t(f)].fused.load(std::memory_order_acquire);
  }
  bool background() const { return thread_.joinable(); }
  uint64_t promotions() const { return promotions_.load(); }
  uint64_t rejections() const { return rejections_.load(); }
  uint64_t failures() const { return failures_.load(); }
  // Replaced variants whose code was given back.
  uint64_t freed() const { return freed_.load(); }
  // Compiles run (installed, rejected or failed) and variants installed from the code cache.
  uint64_t compiles() const { return compiles_.load(); }
  uint64_t loaded() const { return loaded_.load(); }
  // Every unit that ran or holds a variant, as it stands (call after drain()): what the store keeps.
  std::vector<UnitOutcome> outcomes() const;
  // The CPU name and feature string the compiler targets.
  std::string target() const;
  // Milliseconds spent compiling so far, all sites and tiers.
  double compile_ms() const { return compile_ms_.load(); }
  // Seconds from the first call until every site ran at the policy's top tier; -1 until then.
  double time_to_top_s() const;
  // Per-site cycles per call at a tier so far (0 if it never ran there).
  double cycles_per_call(Site s, Tier t) const;

  // Compile totals, per-site tiers and states, the speedups observed between tiers.
  void print_summary(FILE* out) const;
  // --report-code: per site, the tiers that ran (calls); LLVM's share of the executable; JIT bytes.
  void print_code_report(FILE* out) const;

 private:
  // Units: the sites (index = Site), then the fused groups (kSiteCount + Fusion).
  static constexpr size_t kUnitCount = kSiteCount + kFusionCount;
  static bool is_group(size_t unit) { return unit >= kSiteCount; }

  // A compile of one unit at one tier, with a copy of the triggering call's inputs (verification
  // runs on them after the call has returned).
  struct Job {
    size_t unit;
    Tier tier;
    Matrix W;  // the call's matrix (a group's: its first site's), whose width and group x has
    std::vector<float> x{};
    std::vector<int8_t> q{};
    std::vector<float> s{};
    std::vector<int32_t> sums{};  // empty when the call's activation carried none
    bool quantized = false;
  };
  struct Unit {
    std::atomic<State> state{State::Counting};
    std::atomic<uint8_t> tier{uint8_t(Tier::Aot)};
    std::atomic<uint64_t> units{0};    // sites: work so far (written by the forward thread only)
    std::atomic<uint64_t> next_at{0};  // sites, while Counting: units at which to look for a promotion
    MatvecFn aot = nullptr;            // sites: the kernel the site had before the JIT
    // Sites: the live variant of each tier (replaced ones are nulled when freed); ids under mu_.
    std::array<std::atomic<MatvecFn>, kTierCount> fns{};
    std::atomic<FusedFn> fused{nullptr};  // groups: the installed kernel
    std::array<uint64_t, kTierCount> ids{};
    std::array<std::atomic<uint64_t>, kTierCount> calls{}, cycles{};  // groups: at their one tier
    std::atomic<double> top_at_s{-1};  // seconds from the first call to the top tier (group: installed)
    std::string why;                   // under mu_
    // Sites: the tier an earlier run reached (Options::cache), compiled on the first call when no
    // stored variant could be loaded.
    Tier learned = Tier::Aot;
    // A variant loaded from the cache at warm start, not yet verified: the unit's first job takes
    // it instead of compiling (the job's owner only).
    std::unique_ptr<Variant> stored;
    // The running variant's cache key and object, whether it came from the cache, and the key of a
    // cached variant that verification rejected (all under mu_).
    std::string key, rejected_key;
    std::shared_ptr<const std::string> object;
    bool loaded = false;
  };

  Runtime(Transformer& t, const Options& o, std::unique_ptr<Compiler> c, const TestHooks* hooks);
  const char* unit_name(size_t unit) const;
  bool ran(size_t unit) const;  // any call so far
  Status status_of(size_t unit) const;
  Spec spec_of(size_t unit) const;
  // Thresholds of the policy's tiers above `from`: the highest reached (Aot if none), and the next.
  Tier target(Tier from, uint64_t units) const;
  uint64_t next_threshold(Tier from) const;
  // The one legal way to change a unit's state: asserts that it was `from`; `why` for settled states.
  void advance(size_t unit, State from, State to, const std::string& why = "");
  // After a call of site s: queues the fused group that s completes when all its sites are at top.
  void maybe_fuse(Site s, const float* x, const QuantizedVector* xq);
  // Compiles j now (synchronous or fixed policy) or queues it, with a copy of the inputs x, xq.
  void enqueue(Job j, const float* x, const QuantizedVector* xq);
  // Compile -> verify -> install, for sites and groups alike.
  void process(Job& j);
  // "" if the variant equals the reference on j's inputs, else the first mismatch.
  std::string verify(const Job& j, const Variant& v, const Kernels& against) const;
  // The outputs `kernels` give for the unit's matrices W (n of them) on x, xq: rows stacked from
  // base[i] (W13: after swiglu, n becomes 1), each matrix's first `max_rows` rows at most.
  std::vector<float> expected(size_t unit, const Matrix* const* W, int& n, const float* x, const QuantizedVector* xq,
                              const Kernels& kernels, int64_t max_rows, int64_t* base) const;
  // |variant - expected| allowed by the options (0: bit for bit).
  float tolerance(const std::vector<float>& want, Tier tier) const;
  void install(size_t unit, const Variant& v, const std::string& key, bool loaded);
  // The cache key of a unit's variant at `tier`: the unit's name, then Compiler::key_of.
  std::string cache_key(size_t unit, Tier tier) const;
  // Options::cache: every unit at the tier it learned, from stored code where the key matches.
  void warm_start();
  // At a safe point of the forward thread (in an observer call, so no kernel is running): queues
  // the replaced site variants for freeing.
  void retire_replaced();
  void free_variants(const std::vector<uint64_t>& ids);
  void worker();

  Transformer& t_;
  Options o_;
  std::unique_ptr<Compiler> compiler_;
  const TestHooks* hooks_;
  std::vector<std::pair<Tier, uint64_t>> plan_;  // tiers the policy uses, with their thresholds
  std::array<Unit, kUnitCount> units_;
  std::atomic<double> start_s_{0};  // first call seen, steady-clock seconds
  std::atomic<uint64_t> promotions_{0}, rejections_{0}, failures_{0}, freed_{0}, compiles_{0}, loaded_{0};
  std::atomic<double> compile_ms_{0};
  std::atomic<bool> replaced_{false};  // a site variant was replaced and awaits retire_replaced()

  mutable std::mutex mu_;
  std::condition_variable cv_, idle_cv_;
  std::deque<Job> queue_;
  std::vector<uint64_t> retired_;  // variant ids safe to free (by the compile thread)
  int running_ = 0;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace bf::jit

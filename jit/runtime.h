// Tiered JIT for the forward pass's matvec call sites: counts the work each site does, compiles it
// (LLVM interpreter -> ORC LLJIT O0 -> O1 -> O2 -> O3, specialized to the site's matrix and the host
// CPU) when its counter crosses a threshold, checks each new variant against the reference kernel
// on the live inputs of the call that triggered it, and swaps it in atomically. Compiles run on a
// background thread, or inline on the forward thread in synchronous mode (the unikernel).
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
#include "profile/site_profiler.h"

namespace bf::jit {

using prof::Tier;

class Compiler;

enum class Policy : uint8_t {
  Interp,  // every site interpreted, never promoted (the slow baseline)
  Tiered,  // promoted by work counters
  Fixed,   // every site compiled at one level on its first call
};

// A work unit is 4096 multiply-adds (one 64x64 matvec); every call counts at least one. Counting work
// instead of calls makes a heavy kernel leave the interpreter within its first calls.
constexpr uint64_t kMacsPerUnit = 4096;
constexpr float kReassocTolerance = 1e-3f;

struct Options {
  Policy policy = Policy::Tiered;
  Tier fixed = Tier::O3;     // Policy::Fixed
  bool start_interp = true;  // Policy::Tiered: the bottom tier is the interpreter, else the AOT kernel
  // Work units after which a site is compiled at O0, O1, O2, O3. O1..O3 follow the original design's
  // 100 / 1,000 / 10,000 calls; the interpreter (~100x slower) is left early.
  std::array<uint64_t, 4> thresholds{10, 100, 1000, 10000};
  bool sync = false;
  bool trace = false;    // one line per promotion, a summary at exit
  // Compiled tiers may reorder float sums (vectorized f32 dot products); verification then accepts
  // |variant - reference| <= kReassocTolerance * (largest |reference output| of the call).
  bool reassoc = false;
  // Once every site of a group (wq/wk/wv, w1/w3) runs at the policy's top tier, compile the group
  // as one fused kernel at that tier (engine/transformer.h, Fusion).
  bool fuse = true;
  bool corrupt = false;        // tests: every variant is miscompiled, so verification must reject it
  bool corrupt_fused = false;  // tests: only the fused variants are
  FILE* log = stderr;
};

class Runtime final : public MatvecObserver, public prof::TierSource {
 public:
  // Null, after one line on opts.log, when LLVM cannot serve this host: the engine stays on AOT.
  // `t` must outlive the Runtime.
  static std::unique_ptr<Runtime> create(Transformer& t, const Options& opts);
  // Stops compiling and puts the AOT kernels back.
  ~Runtime();

  void on_matvec(Site s, MatvecFn fn, float* out, const Matrix& W, const float* x, const QuantizedVector* xq,
                 uint64_t cycles) override;
  void on_fused(Fusion f, FusedFn fn, const Matrix* const* W, uint64_t cycles) override;
  Tier tier_of(Site s, MatvecFn fn) const override;
  Tier tier_of_fused(Fusion f, FusedFn fn) const override;

  // Blocks until no compile is queued or running.
  void drain();

  Tier site_tier(Site s) const { return Tier(sites_[size_t(s)].tier.load(std::memory_order_acquire)); }
  // The group's fused kernel, null until one is installed.
  FusedFn fused_kernel(Fusion f) const { return fusions_[size_t(f)].fn.load(std::memory_order_acquire); }
  uint64_t promotions() const { return promotions_.load(); }
  uint64_t rejections() const { return rejections_.load(); }
  uint64_t failures() const { return failures_.load(); }
  // Milliseconds spent compiling so far, all sites and tiers.
  double compile_ms() const { return compile_ms_.load(); }
  // Seconds from the first call until every site ran at the policy's top tier; -1 until then.
  double time_to_top_s() const;
  // Per-site cycles per call at a tier so far (0 if it never ran there).
  double cycles_per_call(Site s, Tier t) const;

  // Compile totals, per-site tiers and the speedups observed between them.
  void print_summary(FILE* out) const;
  // --report-code: per site, the tiers that ran (calls); LLVM's share of the executable; JIT bytes.
  void print_code_report(FILE* out) const;

 private:
  struct Job {
    Site site;  // for a fused group: its last site (whose call captured the inputs)
    Tier tier;
    bool fused = false;
    Fusion fusion = Fusion::Qkv;
    Matrix W;  // a fused group's: its first matrix (the activation's width and group)
    std::vector<float> x;
    std::vector<int8_t> q;
    std::vector<float> s;
    bool quantized = false;
  };
  struct SiteState {
    MatvecFn aot = nullptr;  // the kernel the site had before the JIT
    std::atomic<uint64_t> units{0};  // written by the forward thread only
    std::atomic<uint64_t> next_at{0};  // units at which to look for a promotion; UINT64_MAX = none
    std::atomic<uint8_t> tier{uint8_t(Tier::Aot)};
    std::array<std::atomic<MatvecFn>, prof::kTierCount> fns{};
    std::array<std::atomic<uint64_t>, prof::kTierCount> calls{}, cycles{};
    std::atomic<double> top_at_s{-1};  // seconds from the first call to the top tier
  };
  struct FusionState {
    std::atomic<bool> requested{false};  // a compile is queued, running or done (forward thread)
    std::atomic<FusedFn> fn{nullptr};
    std::atomic<uint8_t> tier{uint8_t(Tier::Aot)};
    std::atomic<uint64_t> calls{0}, cycles{0};
    std::atomic<double> at_s{-1};  // seconds from the first call to its installation
  };

  Runtime(Transformer& t, const Options& o, std::unique_ptr<Compiler> c);
  // Thresholds of the policy's tiers above `from`: the highest reached (Aot if none), and the next.
  Tier target(Tier from, uint64_t units) const;
  uint64_t next_threshold(Tier from) const;
  void process(Job& j);
  void process_fused(Job& j);
  bool verify(MatvecFn fn, const Job& j, std::string* why) const;
  bool verify_fused(FusedFn fn, const Job& j, std::string* why) const;
  // After a call of site s: queues the fused group that s completes when all its sites are at top.
  void maybe_fuse(Site s, const float* x, const QuantizedVector* xq);
  // Compiles j now (synchronous or fixed policy) or queues it, with a copy of the inputs x, xq.
  void enqueue(Job j, const float* x, const QuantizedVector* xq);
  void worker();

  Transformer& t_;
  Options o_;
  std::unique_ptr<Compiler> compiler_;
  std::vector<std::pair<Tier, uint64_t>> plan_;  // tiers the policy uses, with their thresholds
  std::array<SiteState, kSiteCount> sites_;
  std::array<FusionState, kFusionCount> fusions_;
  std::atomic<double> start_s_{0};  // first call seen, steady-clock seconds
  std::atomic<uint64_t> promotions_{0}, rejections_{0}, failures_{0}, seq_{0};
  std::atomic<double> compile_ms_{0};

  std::mutex mu_;
  std::condition_variable cv_, idle_cv_;
  std::deque<Job> queue_;
  int running_ = 0;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace bf::jit

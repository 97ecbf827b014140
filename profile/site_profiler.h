// Connects the Profiler to the forward pass: observes every matvec call site of a Transformer.
#pragma once

#include "engine/transformer.h"
#include "profile/profiler.h"

namespace bf::prof {

// Tells which tier produced a kernel (implemented by the JIT); without one every call is AOT.
class TierSource {
 public:
  virtual Tier tier_of(Site s, MatvecFn fn) const = 0;
  virtual Tier tier_of_fused(Fusion f, FusedFn fn) const = 0;

 protected:
  ~TierSource() = default;
};

class SiteProfiler final : public MatvecObserver {
 public:
  SiteProfiler();

  // `next` also sees every call (the JIT's counters), after the profiler.
  void chain(MatvecObserver* next, const TierSource* tiers) {
    next_ = next;
    tiers_ = tiers;
  }

  void on_matvec(Site s, MatvecFn fn, float* out, const Matrix& W, const float* x, const QuantizedVector* xq,
                 uint64_t cycles) override {
    profiler_.record(size_t(s), cycles, uint64_t(W.rows) * uint64_t(W.cols), matrix_bytes(W),
                     tiers_ ? tiers_->tier_of(s, fn) : Tier::Aot);
    if (next_) next_->on_matvec(s, fn, out, W, x, xq, cycles);
  }
  // Profile rows after the sites: one per fused group (qkv, w13).
  void on_fused(Fusion f, FusedFn fn, const Matrix* const* W, uint64_t cycles) override;

  const Profiler& profiler() const { return profiler_; }

 private:
  Profiler profiler_;
  MatvecObserver* next_ = nullptr;
  const TierSource* tiers_ = nullptr;
};

}  // namespace bf::prof

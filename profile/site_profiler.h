// Connects the Profiler to the forward pass: observes every matvec call site of a Transformer.
#pragma once

#include <string>
#include <vector>

#include "engine/sites.h"
#include "profile/profiler.h"

namespace bf::prof {

// Tells which variant of a site's kernel a call ran (implemented by the JIT: its tiers), and their
// names; without one every call ran variant 0, the AOT kernel.
class VariantSource {
 public:
  virtual uint8_t variant_of(Site s, MatvecFn fn) const = 0;
  virtual uint8_t variant_of_fused(Fusion f, FusedFn fn) const = 0;
  // Index = variant; [0] is the AOT kernel. At most kMaxVariants.
  virtual std::vector<std::string> variant_names() const = 0;

 protected:
  ~VariantSource() = default;
};

class SiteProfiler final : public MatvecObserver {
 public:
  SiteProfiler();

  // `next` also sees every call (the JIT's counters), after the profiler.
  void chain(MatvecObserver* next, const VariantSource* variants) {
    next_ = next;
    variants_ = variants;
    profiler_.set_variant_names(variants ? variants->variant_names() : std::vector<std::string>{"aot"});
  }

  void on_matvec(Site s, MatvecFn fn, float* out, const Matrix& W, const float* x, const QuantizedVector* xq,
                 uint64_t cycles) override {
    profiler_.record(size_t(s), cycles, uint64_t(W.rows) * uint64_t(W.cols), matrix_bytes(W),
                     variants_ ? variants_->variant_of(s, fn) : 0);
    if (next_) next_->on_matvec(s, fn, out, W, x, xq, cycles);
  }
  // Profile rows after the sites: one per fused group (qkv, w13).
  void on_fused(Fusion f, FusedFn fn, float* const* out, const Matrix* const* W, const float* x,
                const QuantizedVector* xq, uint64_t cycles) override;

  const Profiler& profiler() const { return profiler_; }

 private:
  Profiler profiler_;
  MatvecObserver* next_ = nullptr;
  const VariantSource* variants_ = nullptr;
};

}  // namespace bf::prof

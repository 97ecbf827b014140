// The forward pass's matvec call sites, the groups of them that can run fused, and the observer that
// sees every call: the seam between the engine and the profiler and JIT above it.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/kernels.h"

namespace bf {

// The matrix-vector call sites of a forward pass. Every layer's site of a kind has the same shape
// (unless a mixed-precision file says otherwise: Transformer::site_uniform), so a kernel specialized
// for a site (the JIT) serves all layers.
enum class Site : uint8_t { Wq, Wk, Wv, Wo, W1, W2, W3, Classifier, Count };
constexpr size_t kSiteCount = size_t(Site::Count);
const char* site_name(Site s);

using MatvecFn = decltype(Kernels::matvec);

// Groups of matvecs that read the same activation and can run as one pass when the JIT installs a
// fused kernel: Qkv = wq, wk, wv; W13 = w1, w3 with SwiGLU applied to the pair (w2's input).
enum class Fusion : uint8_t { Qkv, W13, Count };
constexpr size_t kFusionCount = size_t(Fusion::Count);
const char* fusion_name(Fusion f);
// The sites of a group, in stacked order (W13: w1, w3), and how many there are (at most 3).
int fusion_sites(Fusion f, Site* sites);
constexpr int kMaxFusionSites = 3;

// One row range of a fused group, rows counted through the group's matrices stacked in order:
//   Qkv: rows [0, wq.rows) of wq into out[0], then wk's into out[1], then wv's into out[2];
//   W13: rows [0, w1.rows) of both, out[0][r] = silu(w1 x)[r] * (w3 x)[r] (the swiglu kernel's).
// out[i] are whole output vectors (not offset by r0). Every matrix of a group takes the same
// activation form: xq (quantized once) if they use int8 activations, else x.
using FusedFn = void (*)(float* const* out, const Matrix* const* W, const float* x, const QuantizedVector* xq,
                         int64_t r0, int64_t r1);

// Sees every matvec call once it returned (its pool pass is over: no thread runs `fn` any more): the
// profiler and the JIT's tier counters. `fn` is the kernel that ran, `cycles` its cost in TSC ticks.
// Called on the forward thread.
class MatvecObserver {
 public:
  virtual void on_matvec(Site s, MatvecFn fn, float* out, const Matrix& W, const float* x,
                         const QuantizedVector* xq, uint64_t cycles) = 0;
  // A fused group ran in one pass (only once a fused kernel is installed). W: the group's matrices;
  // out, x, xq: as FusedFn's (the outputs may still be corrected: nothing has read them yet).
  virtual void on_fused(Fusion f, FusedFn fn, float* const* out, const Matrix* const* W, const float* x,
                        const QuantizedVector* xq, uint64_t cycles) = 0;

 protected:
  ~MatvecObserver() = default;
};

}  // namespace bf

// The llama forward pass over one token, with the KV cache and scratch buffers allocated up front.
#pragma once

#include <array>
#include <atomic>
#include <memory>
#include <vector>

#include "engine/model.h"
#include "engine/threadpool.h"
#include "kernels/kernels.h"

namespace bf {

// The matrix-vector call sites of a forward pass. Every layer's site of a kind has the same shape, so
// a kernel specialized for a site (the JIT) serves all layers.
enum class Site : uint8_t { Wq, Wk, Wv, Wo, W1, W2, W3, Classifier, Count };
constexpr size_t kSiteCount = size_t(Site::Count);
const char* site_name(Site s);

using MatvecFn = decltype(Kernels::matvec);

// Groups of matvecs that read the same activation and can run as one pass when the JIT installs a
// fused kernel: Qkv = wq, wk, wv; W13 = w1, w3 with SwiGLU applied to the pair (w2's input).
enum class Fusion : uint8_t { Qkv, W13, Count };
constexpr size_t kFusionCount = size_t(Fusion::Count);
const char* fusion_name(Fusion f);

// One row range of a fused group, rows counted through the group's matrices stacked in order:
//   Qkv: rows [0, wq.rows) of wq into out[0], then wk's into out[1], then wv's into out[2];
//   W13: rows [0, w1.rows) of both, out[0][r] = silu(w1 x)[r] * (w3 x)[r] (the swiglu kernel's).
// out[i] are whole output vectors (not offset by r0). Every matrix of a group takes the same
// activation form: xq (quantized once) if they use int8 activations, else x.
using FusedFn = void (*)(float* const* out, const Matrix* const* W, const float* x, const QuantizedVector* xq,
                         int64_t r0, int64_t r1);

// Sees every matvec call once it returned: the profiler and the JIT's tier counters. `fn` is the
// kernel that ran, `cycles` its cost in TSC ticks (kernels/cycles.h). Called on the forward thread.
class MatvecObserver {
 public:
  virtual void on_matvec(Site s, MatvecFn fn, float* out, const Matrix& W, const float* x,
                         const QuantizedVector* xq, uint64_t cycles) = 0;
  // A fused group ran in one pass (only once a fused kernel is installed). W: the group's matrices.
  virtual void on_fused(Fusion f, FusedFn fn, const Matrix* const* W, uint64_t cycles) = 0;

 protected:
  ~MatvecObserver() = default;
};

class Transformer {
 public:
  // threads: matmul rows are split over a pool of that many (1: no thread is ever created).
  // positions: the KV cache holds that many positions (0, or more than seq_len: seq_len), so a
  // short generation does not pay for the model's whole context.
  Transformer(const Model& model, const Kernels& kernels, int threads = 1, int positions = 0);

  // Replaces the matvec kernel of one call site; safe while another thread runs forward().
  void set_site_kernel(Site s, MatvecFn fn) { site_kernel_[size_t(s)].store(fn, std::memory_order_release); }
  // The matrix a site multiplies by in `layer` (the classifier: the one classifier).
  const Matrix& site_matrix(Site s, size_t layer = 0) const;
  // Runs the group in one pass from the next forward() on (null: separate matvecs again); safe
  // while another thread runs forward(). Only for a group fusable() says yes to.
  void set_fused_kernel(Fusion f, FusedFn fn) { fused_kernel_[size_t(f)].store(fn, std::memory_order_release); }
  // The sites of a group, in stacked order (W13: w1, w3), and how many there are.
  static int fusion_sites(Fusion f, Site* sites);
  // Whether every layer's matrix of the site has layer 0's type, group size and shape, so that one
  // kernel specialized to site_matrix(s) serves them all (a mixed-precision file may differ).
  bool site_uniform(Site s) const;
  // Whether the group's sites are uniform and agree in type, group size and width (one activation
  // form for all; W13 also in rows).
  bool fusable(Fusion f) const;
  // Null (the default) costs one predictable branch per matvec.
  void set_matvec_observer(MatvecObserver* o) { observer_ = o; }

  // Runs `token` at position `pos` (0 <= pos < positions()) and returns the logits (vocab_size floats,
  // valid until the next call). Positions must be fed in order from 0.
  float* forward(int token, int pos);
  // Runs tokens[0..n) at positions pos0.. as a batch (matrix-matrix products), filling the KV cache
  // exactly as n forward() calls would, bit for bit, but without computing logits. Prompts go here.
  void prefill(const int* tokens, int n, int pos0);
  int threads() const { return pool_.size(); }
  int positions() const { return positions_; }

  const Config& config() const { return model_.config; }

 private:
  // out = W x, quantizing x first when W's kernel works on int8 activations.
  void matvec(Site s, float* out, const Matrix& W, const float* x);
  // One layer's matrices of the group (n of them, in stacked order) through a fused kernel: the
  // activation quantized once, one pool pass; out as FusedFn describes.
  void fused_matvec(Fusion f, FusedFn fn, float* const* out, const Matrix* const* W, int n, const float* x);
  // Splits rows [0, rows) into chunks claimed by the pool's threads: f(r0, r1) per chunk (one call
  // over all rows without threads).
  template <class F>
  void for_row_chunks(int64_t rows, const F& f);
  // Splits W's rows over the pool: fn(out + r0, W, x, xq, r0, r1) per chunk.
  void split_rows(MatvecFn fn, float* out, const Matrix& W, const float* x, const QuantizedVector* xq);
  // out[t*ldo ..] = W x[t*ldx ..] for t < n, with the batched kernel, rows split over the pool.
  void matmul(float* out, int64_t ldo, const Matrix& W, const float* x, int64_t ldx, int n);
  void prefill_chunk(const int* tokens, int n, int pos0);
  // Attention of n tokens (positions pos0..) of one layer, all heads, split over the pool:
  // out and q hold one row per token, ld floats apart.
  void attend(float* out, const float* q, int64_t ld, int n, int pos0, size_t layer_off);

  const Model& model_;
  const Kernels& k_;
  const int positions_;
  std::array<std::atomic<MatvecFn>, kSiteCount> site_kernel_;
  std::array<std::atomic<FusedFn>, kFusionCount> fused_kernel_{};
  MatvecObserver* observer_ = nullptr;
  // Activations (run.c's RunState).
  std::vector<float> x_, xb_, xb2_, hb_, hb2_, q_, att_, logits_;
  std::vector<float> key_cache_, value_cache_;  // [layer][pos][kv_dim]
  std::vector<int8_t> xq_q_;
  std::vector<float> xq_s_;
  ThreadPool pool_;
  // Prefill batch buffers ([token][width]), allocated by the first prefill().
  std::vector<float> bx_, bxb_, bxb2_, bq_, bhb_, bhb2_, bxq_s_;
  std::vector<int8_t> bxq_q_;
  std::vector<QuantizedVector> bxq_;
};

}  // namespace bf

// The llama forward pass over one token, with the KV cache and scratch buffers allocated up front.
#pragma once

#include <array>
#include <atomic>
#include <memory>
#include <type_traits>
#include <vector>

#include "engine/model.h"
#include "engine/sites.h"
#include "engine/threadpool.h"
#include "kernels/kernels.h"

namespace bf {

// One token of a batch: which sequence (KV cache slot) it belongs to, at which position, and
// whether its logits are wanted (a prompt token's are not).
struct BatchToken {
  int token, pos, slot;
  bool logits;
};

// A borrowed callable f(int) (the caller's lambda outlives the call): no allocation per use.
class TokenFn {
 public:
  TokenFn() = default;
  template <class F>
    requires(!std::is_same_v<F, TokenFn>)
  TokenFn(const F& f) : fn_([](const void* p, int t) { (*static_cast<const F*>(p))(t); }), f_(&f) {}
  explicit operator bool() const { return fn_ != nullptr; }
  void operator()(int t) const { fn_(f_, t); }

 private:
  void (*fn_)(const void*, int) = nullptr;
  const void* f_ = nullptr;
};

class Transformer {
 public:
  // Tokens per batch (forward_batch; prefill splits longer runs): enough to reuse each cached
  // block of weight rows many times, small enough that the batch activations (kMaxBatch x hidden
  // floats) stay within L2.
  static constexpr int kMaxBatch = 64;

  // threads: matmul rows are split over a pool of that many (1: no thread is ever created).
  // positions: the KV cache holds that many positions (0, or more than seq_len: seq_len), so a
  // short generation does not pay for the model's whole context.
  // slots: independent sequences, each with its own KV cache of `positions` (1..kMaxBatch), so that
  // a server decodes several at once (forward_batch).
  Transformer(const Model& model, const Kernels& kernels, int threads = 1, int positions = 0, int slots = 1);

  // Replaces the matvec kernel of one call site; safe while another thread runs forward().
  void set_site_kernel(Site s, MatvecFn fn) { site_kernel_[size_t(s)].store(fn, std::memory_order_release); }
  MatvecFn site_kernel(Site s) const { return site_kernel_[size_t(s)].load(std::memory_order_acquire); }
  // The kernels this transformer was built with (the AOT ones the JIT's variants must equal).
  const Kernels& kernels() const { return k_; }
  // The matrix a site multiplies by in `layer` (the classifier: the one classifier).
  const Matrix& site_matrix(Site s, size_t layer = 0) const;
  // Runs the group in one pass from the next forward() on (null: separate matvecs again); safe
  // while another thread runs forward(). Only for a group fusable() says yes to.
  void set_fused_kernel(Fusion f, FusedFn fn) { fused_kernel_[size_t(f)].store(fn, std::memory_order_release); }
  // Whether every layer's matrix of the site has layer 0's type, group size and shape, so that one
  // kernel specialized to site_matrix(s) serves them all (a mixed-precision file may differ).
  bool site_uniform(Site s) const;
  // Whether the group's sites are uniform and agree in type, group size and width (one activation
  // form for all; W13 also in rows).
  bool fusable(Fusion f) const;
  // Null (the default) costs one predictable branch per matvec.
  void set_matvec_observer(MatvecObserver* o) { observer_ = o; }

  // Runs `token` at position `pos` (0 <= pos < positions()) of `slot` and returns the logits
  // (vocab_size floats, valid until the next call). A slot's positions must be fed in order from 0
  // (a slot is reused by starting again from 0).
  float* forward(int token, int pos, int slot = 0);
  // Runs tokens[0..n) at positions pos0.. of `slot` as batches (matrix-matrix products), filling the
  // KV cache exactly as n forward() calls would, bit for bit, but without computing logits. Prompts
  // go here.
  void prefill(const int* tokens, int n, int pos0, int slot = 0);
  // Runs b[0..n) (1 <= n <= kMaxBatch) as one batch: each token at its own position of its own slot,
  // with the matrix-matrix products prefill uses, so every token's KV cache entries and logits are
  // bit for bit those of forward(). Within a slot, tokens must come in position order. Returns the
  // logits of the tokens marked `logits` (at most slots() of them), in order, vocab_size floats
  // apart, valid until the next call (the sampler may scale them in place).
  float* forward_batch(const BatchToken* b, int n);
  int threads() const { return pool_.size(); }
  int positions() const { return positions_; }
  int slots() const { return slots_; }

  const Config& config() const { return model_.config; }

 private:
  // out = W x for the site's matrix of `layer`, quantizing x first when its kernel works on int8
  // activations.
  void matvec(Site s, size_t layer, float* out, const float* x);
  // q, k, v of `layer` from xb_: one pass of the fused qkv kernel when the JIT installed one, else
  // three matvecs.
  void attention_projections(size_t layer, float* q, float* k, float* v);
  // xb_ = w2(silu(w1 xb_) * w3 xb_) of `layer`: w1 and w3 in one pass of the fused w13 kernel (SwiGLU
  // included) when the JIT installed one, else two matvecs and swiglu.
  void ffn(size_t layer);
  // One layer's matrices of the group (n of them, in stacked order) through a fused kernel: the
  // activation quantized once, one pool pass; out as FusedFn describes.
  void fused_matvec(Fusion f, FusedFn fn, float* const* out, const Matrix* const* W, int n, const float* x);
  // f(task) for every task in [0, tasks), claimed by the pool's threads (ThreadPool::run runs a
  // plain loop without threads).
  template <class F>
  void parallel_for(int tasks, const F& f);
  // Splits rows [0, rows) into chunks claimed by the pool's threads: f(r0, r1) per chunk (one call
  // over all rows without threads).
  template <class F>
  void for_row_chunks(int64_t rows, const F& f);
  // Splits W's rows over the pool: fn(out + r0, W, x, xq, r0, r1) per chunk.
  void split_rows(MatvecFn fn, float* out, const Matrix& W, const float* x, const QuantizedVector* xq);
  // out[t*ldo ..] = W x[t*ldx ..] for t < n, with the batched kernel, rows split over the pool.
  void matmul(float* out, int64_t ldo, const Matrix& W, const float* x, int64_t ldx, int n,
              TokenFn prepare = {}) {
    float* const outs[1] = {out};
    const int64_t ldos[1] = {ldo};
    const Matrix* const Ws[1] = {&W};
    matmul_group(outs, ldos, Ws, 1, x, ldx, n, prepare);
  }
  // matmul() of m matrices on the same x (wq/wk/wv, w1/w3): x quantized once and all their rows
  // in one pool pass (one barrier instead of m), when they agree in type, group and width.
  // prepare(t), when given, first makes token t's row of x (its norm, say); it runs beside t's
  // quantization, tokens split over the pool, so the per-token work is not serial between the
  // parallel matmuls.
  void matmul_group(float* const* out, const int64_t* ldo, const Matrix* const* W, int m, const float* x, int64_t ldx,
                    int n, TokenFn prepare = {});
  // Attention of n tokens (each at b[t].pos of b[t].slot) in one layer, all heads, split over the
  // pool: out and q hold one row per token, ld floats apart.
  void attend(float* out, const float* q, int64_t ld, int n, const BatchToken* b, int layer);
  // The KV caches hold each (slot, layer, kv head) as its own run of positions, head_size floats
  // apart: an attention head streams one contiguous range (positions kv_dim apart measured 2x
  // slower per token once several slots' caches outgrow the L3 cache).
  size_t kv_offset(int slot, int layer, int head) const {
    const Config& c = model_.config;
    return ((size_t(slot) * size_t(c.n_layers) + size_t(layer)) * size_t(c.n_kv_heads) + size_t(head)) *
           size_t(positions_) * size_t(c.head_size());
  }
  // Writes one token's k and v (kv_dim floats each, roped) into the caches.
  void store_kv(int slot, int layer, int pos, const float* k, const float* v);

  const Model& model_;
  const Kernels& k_;
  const int positions_;
  const int slots_;
  std::array<std::atomic<MatvecFn>, kSiteCount> site_kernel_;
  std::array<std::atomic<FusedFn>, kFusionCount> fused_kernel_{};
  MatvecObserver* observer_ = nullptr;
  // Activations (run.c's RunState), for one position.
  std::vector<float> x_;       // (dim,) the residual stream
  std::vector<float> xb_;      // (dim,) inside a residual branch: rmsnorm'd input, attention output, ffn output
  std::vector<float> xb2_;     // (dim,) wo's output, before the residual add
  std::vector<float> hb_;      // (hidden_dim,) w1's output, then silu(w1 x) * w3 x
  std::vector<float> hb2_;     // (hidden_dim,) w3's output (unused once w13 is fused)
  std::vector<float> q_;       // (dim,) the query
  std::vector<float> k_tmp_, v_tmp_;  // (kv_dim,) the key and value, before the caches
  std::vector<float> att_;     // (threads, positions) one attention score row per pool thread
  std::vector<float> logits_;  // (vocab_size,)
  std::vector<float> key_cache_, value_cache_;  // (slots, n_layers, n_kv_heads, positions, head_size)
  std::vector<int8_t> xq_q_;   // (max(dim, hidden_dim),) the int8 activation of the current matvec
  std::vector<float> xq_s_;    // (max(dim, hidden_dim),) its block scales (at most one per element)
  std::vector<int32_t> xq_sums_;  // (max(dim, hidden_dim),) its block sums (the repacked kernels' term)
  ThreadPool pool_;
  // Batch buffers, allocated by the first forward_batch(): rows padded() floats apart.
  std::vector<float> bx_, bxb_, bxb2_, bq_;  // (kMaxBatch, dim) x_, xb_, xb2_, q_ per token
  std::vector<float> bk_, bv_;               // (kMaxBatch, kv_dim) k, v per token, before the caches
  std::vector<float> blogits_;               // (slots, vocab_size) the logits forward_batch returns
  std::vector<float> bhb_, bhb2_;            // (kMaxBatch, hidden_dim) hb_, hb2_ per token
  std::vector<int8_t> bxq_q_;                // (kMaxBatch, max(dim, hidden_dim)) int8 activations
  std::vector<float> bxq_s_;                 // (kMaxBatch, max(dim, hidden_dim)) their scales
  std::vector<int32_t> bxq_sums_;            // (kMaxBatch, max(dim, hidden_dim)) their block sums
  std::vector<QuantizedVector> bxq_;         // (kMaxBatch,) views of the two above
};

}  // namespace bf

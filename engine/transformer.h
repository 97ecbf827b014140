// The llama forward pass over one token, with the KV cache and scratch buffers allocated up front.
#pragma once

#include <array>
#include <atomic>
#include <memory>
#include <vector>

#include "engine/model.h"
#include "kernels/kernels.h"

namespace bf {

// The matrix-vector call sites of a forward pass. Every layer's site of a kind has the same shape, so
// a kernel specialized for a site (the JIT) serves all layers.
enum class Site : uint8_t { Wq, Wk, Wv, Wo, W1, W2, W3, Classifier, Count };
constexpr size_t kSiteCount = size_t(Site::Count);
const char* site_name(Site s);

using MatvecFn = decltype(Kernels::matvec);

class Transformer {
 public:
  Transformer(const Model& model, const Kernels& kernels);

  // Replaces the matvec kernel of one call site; safe while another thread runs forward().
  void set_site_kernel(Site s, MatvecFn fn) { site_kernel_[size_t(s)].store(fn, std::memory_order_release); }
  // The matrix a site multiplies by (layer 0 for per-layer sites).
  const Matrix& site_matrix(Site s) const;

  // Runs `token` at position `pos` (0 <= pos < seq_len) and returns the logits (vocab_size floats,
  // valid until the next call). Positions must be fed in order from 0.
  float* forward(int token, int pos);

  const Config& config() const { return model_.config; }

 private:
  // out = W x, quantizing x first when W's kernel works on int8 activations.
  void matvec(Site s, float* out, const Matrix& W, const float* x);

  const Model& model_;
  const Kernels& k_;
  std::array<std::atomic<MatvecFn>, kSiteCount> site_kernel_;
  // Activations (run.c's RunState).
  std::vector<float> x_, xb_, xb2_, hb_, hb2_, q_, att_, logits_;
  std::vector<float> key_cache_, value_cache_;  // [layer][pos][kv_dim]
  std::vector<int8_t> xq_q_;
  std::vector<float> xq_s_;
};

}  // namespace bf

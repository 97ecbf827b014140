// The llama forward pass over one token, with the KV cache and scratch buffers allocated up front.
#pragma once

#include <memory>
#include <vector>

#include "engine/model.h"
#include "kernels/kernels.h"

namespace bf {

class Transformer {
 public:
  Transformer(const Model& model, const Kernels& kernels);

  // Runs `token` at position `pos` (0 <= pos < seq_len) and returns the logits (vocab_size floats,
  // valid until the next call). Positions must be fed in order from 0.
  float* forward(int token, int pos);

  const Config& config() const { return model_.config; }

 private:
  // out = W x, quantizing x first when W's kernel works on int8 activations.
  void matvec(float* out, const Matrix& W, const float* x);

  const Model& model_;
  const Kernels& k_;
  // Activations (run.c's RunState).
  std::vector<float> x_, xb_, xb2_, hb_, hb2_, q_, att_, logits_;
  std::vector<float> key_cache_, value_cache_;  // [layer][pos][kv_dim]
  std::vector<int8_t> xq_q_;
  std::vector<float> xq_s_;
};

}  // namespace bf

#include "engine/transformer.h"

#include <algorithm>
#include <cassert>

namespace bf {

const char* site_name(Site s) {
  static const char* const names[kSiteCount] = {"wq", "wk", "wv", "wo", "w1", "w2", "w3", "classifier"};
  return size_t(s) < kSiteCount ? names[size_t(s)] : "?";
}

Transformer::Transformer(const Model& model, const Kernels& kernels) : model_(model), k_(kernels) {
  for (auto& fn : site_kernel_) fn.store(kernels.matvec, std::memory_order_relaxed);
  const Config& c = model.config;
  const size_t dim = size_t(c.dim), hidden = size_t(c.hidden_dim);
  x_.resize(dim);
  xb_.resize(dim);
  xb2_.resize(dim);
  hb_.resize(hidden);
  hb2_.resize(hidden);
  q_.resize(dim);
  att_.resize(size_t(c.seq_len));
  logits_.resize(size_t(c.vocab_size));
  const size_t cache = size_t(c.n_layers) * size_t(c.seq_len) * size_t(c.kv_dim());
  key_cache_.resize(cache);
  value_cache_.resize(cache);
  const size_t widest = std::max(dim, hidden);
  xq_q_.resize(widest);
  xq_s_.resize(widest);
}

const Matrix& Transformer::site_matrix(Site s) const {
  const Weights& w = model_.weights;
  const LayerWeights& l = w.layers[0];
  switch (s) {
    case Site::Wq: return l.wq;
    case Site::Wk: return l.wk;
    case Site::Wv: return l.wv;
    case Site::Wo: return l.wo;
    case Site::W1: return l.w1;
    case Site::W2: return l.w2;
    case Site::W3: return l.w3;
    default: return w.classifier;
  }
}

void Transformer::matvec(Site s, float* out, const Matrix& W, const float* x) {
  const MatvecFn fn = site_kernel_[size_t(s)].load(std::memory_order_acquire);
  if (!matrix_uses_quantized_activation(W)) {
    fn(out, W, x, nullptr, 0, W.rows);
    return;
  }
  QuantizedVector xq{xq_q_.data(), xq_s_.data(), W.cols, matrix_group(W)};
  k_.quantize(xq, x);
  fn(out, W, x, &xq, 0, W.rows);
}

float* Transformer::forward(int token, int pos) {
  const Config& c = model_.config;
  const Weights& w = model_.weights;
  assert(token >= 0 && token < c.vocab_size);
  assert(pos >= 0 && pos < c.seq_len);
  const int dim = c.dim, kv_dim = c.kv_dim(), head_size = c.head_size();
  const int kv_mul = c.n_heads / c.n_kv_heads;  // query heads sharing one key/value head
  float* x = x_.data();

  k_.dequantize_row(x, w.token_embedding, token);

  for (int l = 0; l < c.n_layers; l++) {
    const LayerWeights& lw = w.layers[size_t(l)];
    const size_t layer_off = size_t(l) * size_t(c.seq_len) * size_t(kv_dim);
    float* k = key_cache_.data() + layer_off + size_t(pos) * size_t(kv_dim);
    float* v = value_cache_.data() + layer_off + size_t(pos) * size_t(kv_dim);

    // Attention: q, k, v of this position go straight into the cache.
    k_.rmsnorm(xb_.data(), x, lw.rms_att, dim, c.norm_eps);
    matvec(Site::Wq, q_.data(), lw.wq, xb_.data());
    matvec(Site::Wk, k, lw.wk, xb_.data());
    matvec(Site::Wv, v, lw.wv, xb_.data());
    k_.rope(q_.data(), k, pos, dim, kv_dim, head_size, c.rope_theta, c.rope_style);
    for (int h = 0; h < c.n_heads; h++) {
      const size_t kv_off = layer_off + size_t(h / kv_mul) * size_t(head_size);
      k_.attention(xb_.data() + h * head_size, att_.data(), q_.data() + h * head_size,
                   key_cache_.data() + kv_off, value_cache_.data() + kv_off, pos, head_size, kv_dim);
    }
    matvec(Site::Wo, xb2_.data(), lw.wo, xb_.data());
    for (int i = 0; i < dim; i++) x[i] += xb2_[size_t(i)];

    // Feed-forward: w2(silu(w1 x) * w3 x).
    k_.rmsnorm(xb_.data(), x, lw.rms_ffn, dim, c.norm_eps);
    matvec(Site::W1, hb_.data(), lw.w1, xb_.data());
    matvec(Site::W3, hb2_.data(), lw.w3, xb_.data());
    k_.swiglu(hb_.data(), hb2_.data(), c.hidden_dim);
    matvec(Site::W2, xb_.data(), lw.w2, hb_.data());
    for (int i = 0; i < dim; i++) x[i] += xb_[size_t(i)];
  }

  k_.rmsnorm(x, x, w.rms_final, dim, c.norm_eps);
  matvec(Site::Classifier, logits_.data(), w.classifier, x);
  return logits_.data();
}

}  // namespace bf

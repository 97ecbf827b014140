#include "engine/transformer.h"

#include <algorithm>
#include <cassert>
#include <new>

#include "kernels/cycles.h"

namespace bf {

const char* site_name(Site s) {
  static const char* const names[kSiteCount] = {"wq", "wk", "wv", "wo", "w1", "w2", "w3", "classifier"};
  return size_t(s) < kSiteCount ? names[size_t(s)] : "?";
}

namespace {

// Row chunks per thread: several, so that a thread the OS deschedules holds up little work (the
// others claim the rest), few enough that each chunk streams a long contiguous range.
constexpr int kChunksPerThread = 4;

// Rows [r0, r1) of chunk i of `chunks`, in multiples of 16 so SIMD kernels see whole row blocks.
void chunk_rows(int64_t rows, int chunks, int i, int64_t* r0, int64_t* r1) {
  const int64_t chunk = ((rows + chunks - 1) / chunks + 15) / 16 * 16;
  *r0 = std::min(rows, chunk * i);
  *r1 = std::min(rows, *r0 + chunk);
}

// x[i] += y[i]: the residual adds.
void add(float* x, const float* y, int n) {
  for (int i = 0; i < n; i++) x[i] += y[i];
}

int chunk_count(int64_t rows, int threads) {
  return int(std::min<int64_t>(threads * kChunksPerThread, (rows + 15) / 16));
}

}  // namespace

template <class F>
void Transformer::parallel_for(int tasks, const F& f) {
  pool_.run([](void* p, int task, int) { (*static_cast<const F*>(p))(task); }, const_cast<F*>(&f), tasks);
}

template <class F>
void Transformer::for_row_chunks(int64_t rows, const F& f) {
  if (pool_.size() == 1) {
    f(int64_t(0), rows);
    return;
  }
  const int chunks = chunk_count(rows, pool_.size());
  parallel_for(chunks, [&](int task) {
    int64_t r0, r1;
    chunk_rows(rows, chunks, task, &r0, &r1);
    if (r0 < r1) f(r0, r1);
  });
}

const char* fusion_name(Fusion f) {
  static const char* const names[kFusionCount] = {"qkv", "w13"};
  return size_t(f) < kFusionCount ? names[size_t(f)] : "?";
}

int fusion_sites(Fusion f, Site* sites) {
  if (f == Fusion::Qkv) {
    sites[0] = Site::Wq, sites[1] = Site::Wk, sites[2] = Site::Wv;
    return 3;
  }
  sites[0] = Site::W1, sites[1] = Site::W3;
  return 2;
}

bool Transformer::site_uniform(Site s) const {
  const Matrix& first = site_matrix(s);
  for (size_t l = 1; l < model_.weights.layers.size(); l++) {
    const Matrix& m = site_matrix(s, l);
    if (m.type != first.type || m.group != first.group || m.rows != first.rows || m.cols != first.cols) return false;
  }
  return true;
}

bool Transformer::fusable(Fusion f) const {
  Site sites[kMaxFusionSites];
  const int n = fusion_sites(f, sites);
  const Matrix& first = site_matrix(sites[0]);
  for (int i = 0; i < n; i++) {
    const Matrix& m = site_matrix(sites[i]);
    if (!site_uniform(sites[i]) || m.type != first.type || m.group != first.group || m.cols != first.cols)
      return false;
    if (f == Fusion::W13 && m.rows != first.rows) return false;
  }
  return true;
}

Transformer::Transformer(const Model& model, const Kernels& kernels, int threads, int positions, int slots)
    : model_(model), k_(kernels),
      positions_(positions <= 0 || positions > model.config.seq_len ? model.config.seq_len : positions),
      slots_(slots), pool_(threads) {
  assert(slots >= 1 && slots <= kMaxBatch);
  for (auto& fn : site_kernel_) fn.store(kernels.matvec, std::memory_order_relaxed);
  const Config& c = model.config;
  const size_t dim = size_t(c.dim), hidden = size_t(c.hidden_dim);
  x_.resize(dim);
  xb_.resize(dim);
  xb2_.resize(dim);
  hb_.resize(hidden);
  hb2_.resize(hidden);
  q_.resize(dim);
  k_tmp_.resize(size_t(c.kv_dim()));
  v_tmp_.resize(size_t(c.kv_dim()));
  att_.resize(size_t(positions_) * size_t(pool_.size()));  // one score row per thread
  logits_.resize(size_t(c.vocab_size));
  const size_t cache = size_t(slots_) * size_t(c.n_layers) * size_t(positions_) * size_t(c.kv_dim());
  check_kv_cache_fits(model, positions_, slots_);  // a message naming the file and the size, not "out of memory"
  try {
    key_cache_.resize(cache);
    value_cache_.resize(cache);
  } catch (const std::bad_alloc&) {
    fail_kv_cache(model, positions_, "it cannot be allocated", slots_);
  }
  const size_t widest = std::max(dim, hidden);
  xq_q_.resize(widest);
  xq_s_.resize(widest);
  xq_sums_.resize(widest);
}

const Matrix& Transformer::site_matrix(Site s, size_t layer) const {
  const Weights& w = model_.weights;
  assert(layer < w.layers.size());
  const LayerWeights& l = w.layers[layer];
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

void Transformer::matvec(Site s, size_t layer, float* out, const float* x) {
  const Matrix& W = site_matrix(s, layer);
  const MatvecFn fn = site_kernel_[size_t(s)].load(std::memory_order_acquire);
  QuantizedVector xq{xq_q_.data(), xq_s_.data(), W.cols, matrix_group(W), xq_sums_.data()};
  const bool quantized = matrix_uses_quantized_activation(W);
  if (quantized) k_.quantize(xq, x);
  const uint64_t t0 = observer_ ? prof::cycles() : 0;
  split_rows(fn, out, W, x, quantized ? &xq : nullptr);
  if (observer_) observer_->on_matvec(s, fn, out, W, x, quantized ? &xq : nullptr, prof::cycles() - t0);
}

void Transformer::fused_matvec(Fusion f, FusedFn fn, float* const* out, const Matrix* const* W, int n,
                               const float* x) {
  const Matrix& W0 = *W[0];
  QuantizedVector xq{xq_q_.data(), xq_s_.data(), W0.cols, matrix_group(W0), xq_sums_.data()};
  const bool quantized = matrix_uses_quantized_activation(W0);
  if (quantized) k_.quantize(xq, x);  // once for the whole group
  int64_t rows = W0.rows;
  if (f == Fusion::Qkv)
    for (int i = 1; i < n; i++) rows += W[i]->rows;
  const QuantizedVector* xqp = quantized ? &xq : nullptr;
  const uint64_t t0 = observer_ ? prof::cycles() : 0;
  for_row_chunks(rows, [&](int64_t r0, int64_t r1) { fn(out, W, x, xqp, r0, r1); });
  if (observer_) observer_->on_fused(f, fn, out, W, x, xqp, prof::cycles() - t0);
}

void Transformer::attention_projections(size_t l, float* q, float* k, float* v) {
  if (const FusedFn qkv = fused_kernel_[size_t(Fusion::Qkv)].load(std::memory_order_acquire)) {
    float* const out[3] = {q, k, v};
    const Matrix* const W[3] = {&site_matrix(Site::Wq, l), &site_matrix(Site::Wk, l), &site_matrix(Site::Wv, l)};
    fused_matvec(Fusion::Qkv, qkv, out, W, 3, xb_.data());
    return;
  }
  matvec(Site::Wq, l, q, xb_.data());
  matvec(Site::Wk, l, k, xb_.data());
  matvec(Site::Wv, l, v, xb_.data());
}

void Transformer::ffn(size_t l) {
  if (const FusedFn w13 = fused_kernel_[size_t(Fusion::W13)].load(std::memory_order_acquire)) {
    float* const out[1] = {hb_.data()};
    const Matrix* const W[2] = {&site_matrix(Site::W1, l), &site_matrix(Site::W3, l)};
    fused_matvec(Fusion::W13, w13, out, W, 2, xb_.data());
  } else {
    matvec(Site::W1, l, hb_.data(), xb_.data());
    matvec(Site::W3, l, hb2_.data(), xb_.data());
    k_.swiglu(hb_.data(), hb2_.data(), model_.config.hidden_dim);
  }
  matvec(Site::W2, l, xb_.data(), hb_.data());
}

float* Transformer::forward(int token, int pos, int slot) {
  const Config& c = model_.config;
  const Weights& w = model_.weights;
  assert(token >= 0 && token < c.vocab_size);
  assert(pos >= 0 && pos < positions_);
  assert(slot >= 0 && slot < slots_);
  const BatchToken self{token, pos, slot, true};
  const int dim = c.dim, kv_dim = c.kv_dim(), head_size = c.head_size();
  float* x = x_.data();

  k_.dequantize_row(x, w.token_embedding, token);

  for (int l = 0; l < c.n_layers; l++) {
    const LayerWeights& lw = w.layers[size_t(l)];
    float *k = k_tmp_.data(), *v = v_tmp_.data();

    // Attention: q, k, v of this position (k and v into the caches once roped).
    k_.rmsnorm(xb_.data(), x, lw.rms_att, dim, c.norm_eps);
    attention_projections(size_t(l), q_.data(), k, v);
    k_.rope(q_.data(), k, pos, dim, kv_dim, head_size, c.rope_theta, c.rope_style);
    store_kv(slot, l, pos, k, v);
    attend(xb_.data(), q_.data(), dim, 1, &self, l);
    matvec(Site::Wo, size_t(l), xb2_.data(), xb_.data());
    add(x, xb2_.data(), dim);

    // Feed-forward: w2(silu(w1 x) * w3 x).
    k_.rmsnorm(xb_.data(), x, lw.rms_ffn, dim, c.norm_eps);
    ffn(size_t(l));
    add(x, xb_.data(), dim);
  }

  k_.rmsnorm(x, x, w.rms_final, dim, c.norm_eps);
  matvec(Site::Classifier, 0, logits_.data(), x);
  return logits_.data();
}

void Transformer::split_rows(MatvecFn fn, float* out, const Matrix& W, const float* x,
                             const QuantizedVector* xq) {
  for_row_chunks(W.rows, [&](int64_t r0, int64_t r1) { fn(out + r0, W, x, xq, r0, r1); });
}

void Transformer::matmul_group(float* const* out, const int64_t* ldo, const Matrix* const* W, int m, const float* x,
                               int64_t ldx, int n, TokenFn prepare) {
  assert(m >= 1 && m <= 3);
  for (int i = 1; i < m; i++)
    if (W[i]->type != W[0]->type || W[i]->group != W[0]->group || W[i]->cols != W[0]->cols) {
      if (prepare) parallel_for(n, prepare);
      for (int k = 0; k < m; k++) matmul_group(out + k, ldo + k, W + k, 1, x, ldx, n);
      return;
    }
  const QuantizedVector* xq = nullptr;
  if (matrix_uses_quantized_activation(*W[0])) {
    const size_t stride = bxq_q_.size() / size_t(kMaxBatch);
    parallel_for(n, [&](int t) {
      if (prepare) prepare(t);
      bxq_[size_t(t)] = {bxq_q_.data() + size_t(t) * stride, bxq_s_.data() + size_t(t) * stride, W[0]->cols,
                         matrix_group(*W[0]), bxq_sums_.data() + size_t(t) * stride};
      k_.quantize(bxq_[size_t(t)], x + t * ldx);
    });
    xq = bxq_.data();
  } else if (prepare) {
    parallel_for(n, prepare);
  }
  int64_t first[4] = {0};  // the stacked rows of matrix i: [first[i], first[i + 1])
  for (int i = 0; i < m; i++) first[i + 1] = first[i] + W[i]->rows;
  for_row_chunks(first[m], [&](int64_t r0, int64_t r1) {
    for (int i = 0; i < m; i++) {
      const int64_t lo = std::max(r0, first[i]) - first[i], hi = std::min(r1, first[i + 1]) - first[i];
      if (lo < hi) k_.matmul(out[i] + lo, ldo[i], *W[i], x, ldx, xq, n, lo, hi);
    }
  });
}

void Transformer::store_kv(int slot, int layer, int pos, const float* k, const float* v) {
  const Config& c = model_.config;
  const int hs = c.head_size();
  for (int h = 0; h < c.n_kv_heads; h++) {
    const size_t at = kv_offset(slot, layer, h) + size_t(pos) * size_t(hs);
    std::copy_n(k + h * hs, hs, key_cache_.data() + at);
    std::copy_n(v + h * hs, hs, value_cache_.data() + at);
  }
}

void Transformer::attend(float* out, const float* q, int64_t ld, int n, const BatchToken* b, int layer) {
  struct Job {
    Transformer* self;
    float* out;
    const float* q;
    int64_t ld;
    const BatchToken* b;
    int layer;
  } job{this, out, q, ld, b, layer};
  // One task per (token, head); each thread has its own score row.
  pool_.run(
      [](void* p, int task, int thread) {
        const Job& j = *static_cast<const Job*>(p);
        Transformer& self = *j.self;
        const Config& c = self.model_.config;
        const int hs = c.head_size(), kv_mul = c.n_heads / c.n_kv_heads;
        const int t = task / c.n_heads, h = task % c.n_heads;
        const size_t kv_off = self.kv_offset(j.b[t].slot, j.layer, h / kv_mul);
        self.k_.attention(j.out + t * j.ld + h * hs, self.att_.data() + size_t(thread) * size_t(self.positions_),
                          j.q + t * j.ld + h * hs, self.key_cache_.data() + kv_off, self.value_cache_.data() + kv_off,
                          j.b[t].pos, hs, hs);
      },
      &job, n * model_.config.n_heads);
}

// Row stride of the batch buffers: a width plus one cache line, because rows 4 KiB apart all map
// to one L1 set and the batched kernel reads several tokens' rows at once (measured 1.5x).
namespace {
int64_t padded(int width) { return int64_t(width) + 16; }
}  // namespace

void Transformer::prefill(const int* tokens, int n, int pos0, int slot) {
  assert(n >= 0 && pos0 >= 0 && pos0 + n <= positions_);
  BatchToken b[kMaxBatch];
  for (int done = 0; done < n; done += kMaxBatch) {
    const int m = std::min(kMaxBatch, n - done);
    for (int t = 0; t < m; t++) b[t] = {tokens[done + t], pos0 + done + t, slot, false};
    forward_batch(b, m);
  }
}

// forward()'s operations, each applied to every token of the batch in turn: the same kernels on the
// same values, so the caches and logits end up bit-identical.
float* Transformer::forward_batch(const BatchToken* b, int n) {
  const Config& c = model_.config;
  const Weights& w = model_.weights;
  const int dim = c.dim, hidden = c.hidden_dim, kv_dim = c.kv_dim(), head_size = c.head_size();
  const int64_t ld = padded(dim), ldh = padded(hidden), ldk = padded(kv_dim);
  assert(n >= 1 && n <= kMaxBatch);
  if (bx_.empty()) {
    const size_t B = kMaxBatch, wd = size_t(ld), wh = size_t(ldh);
    for (auto* v : {&bx_, &bxb_, &bxb2_, &bq_}) v->resize(B * wd);
    bk_.resize(B * size_t(ldk));
    bv_.resize(B * size_t(ldk));
    bhb_.resize(B * wh);
    bhb2_.resize(B * wh);
    bxq_q_.resize(B * std::max(wd, wh));
    bxq_s_.resize(B * std::max(wd, wh));
    bxq_sums_.resize(B * std::max(wd, wh));
    bxq_.resize(B);
    blogits_.resize(size_t(slots_) * size_t(c.vocab_size));
  }
  float *X = bx_.data(), *XB = bxb_.data(), *XB2 = bxb2_.data(), *Q = bq_.data(), *K = bk_.data(), *V = bv_.data();
  float *HB = bhb_.data(), *HB2 = bhb2_.data();

  for (int t = 0; t < n; t++) {
    assert(b[t].token >= 0 && b[t].token < c.vocab_size);
    assert(b[t].pos >= 0 && b[t].pos < positions_ && b[t].slot >= 0 && b[t].slot < slots_);
  }
  // The per-token steps between the matmuls run as their `prepare`, tokens split over the pool.
  for (int l = 0; l < c.n_layers; l++) {
    const LayerWeights& lw = w.layers[size_t(l)];
    {
      float* const out[3] = {Q, K, V};
      const int64_t lds[3] = {ld, ldk, ldk};
      const Matrix* const W[3] = {&lw.wq, &lw.wk, &lw.wv};
      matmul_group(out, lds, W, 3, XB, ld, n, [&](int t) {
        if (l == 0) k_.dequantize_row(X + t * ld, w.token_embedding, b[t].token);
        else add(X + t * ld, XB + t * ld, dim);  // the previous layer's feed-forward
        k_.rmsnorm(XB + t * ld, X + t * ld, lw.rms_att, dim, c.norm_eps);
      });
    }
    // Each token's k and v into its slot's caches, before any token attends (a token sees the
    // earlier tokens of its slot in this batch).
    parallel_for(n, [&](int t) {
      k_.rope(Q + t * ld, K + t * ldk, b[t].pos, dim, kv_dim, head_size, c.rope_theta, c.rope_style);
      store_kv(b[t].slot, l, b[t].pos, K + t * ldk, V + t * ldk);
    });
    attend(XB, Q, ld, n, b, l);
    matmul(XB2, ld, lw.wo, XB, ld, n);
    {
      float* const out[2] = {HB, HB2};
      const int64_t lds[2] = {ldh, ldh};
      const Matrix* const W[2] = {&lw.w1, &lw.w3};
      matmul_group(out, lds, W, 2, XB, ld, n, [&](int t) {
        add(X + t * ld, XB2 + t * ld, dim);  // attention's output
        k_.rmsnorm(XB + t * ld, X + t * ld, lw.rms_ffn, dim, c.norm_eps);
      });
    }
    matmul(XB, ld, lw.w2, HB, ldh, n, [&](int t) { k_.swiglu(HB + t * ldh, HB2 + t * ldh, hidden); });
  }

  // The last feed-forward, the final norm (into XB2's rows, in order) and the classifier, for the
  // tokens whose logits are wanted only.
  int wanted[kMaxBatch], m = 0;
  for (int t = 0; t < n; t++)
    if (b[t].logits) wanted[m++] = t;
  assert(m <= slots_);
  if (m > 0)
    matmul(blogits_.data(), c.vocab_size, w.classifier, XB2, ld, m, [&](int i) {
      const int t = wanted[i];
      add(X + t * ld, XB + t * ld, dim);
      k_.rmsnorm(XB2 + i * ld, X + t * ld, w.rms_final, dim, c.norm_eps);
    });
  return blogits_.data();
}

}  // namespace bf

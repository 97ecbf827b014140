// repack_weights: the file's Q8_0 / Q4_0 matrices rewritten in the kernels' 8-row layout.
#include <cassert>
#include <cstring>
#include <vector>

#include "engine/model.h"

namespace bf {

std::vector<Matrix*> repackable_matrices(Model& m) {
  Weights& w = m.weights;
  std::vector<Matrix*> todo;
  const auto add = [&](Matrix& x) {
    // Each distinct matrix once (the classifier may be the embedding table).
    if (repackable(x) && (&x != &w.classifier || x.data != w.token_embedding.data)) todo.push_back(&x);
  };
  add(w.token_embedding);
  for (LayerWeights& l : w.layers)
    for (Matrix* x : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w1, &l.w2, &l.w3}) add(*x);
  add(w.classifier);
  return todo;
}

namespace {

// Points each matrix of `todo` at its repacked form, laid out one after the other in m.repacked;
// `fill` writes matrix x's repacked bytes to dst first (or nothing: they are there already).
template <typename Fill>
void lay_out(Model& m, const std::vector<Matrix*>& todo, Fill fill) {
  Weights& w = m.weights;
  uint8_t* dst = m.repacked.data();
  for (Matrix* x : todo) {
    const bool shared = x == &w.token_embedding && w.classifier.data == x->data;
    fill(*x, dst);
    x->type = repacked_dtype(x->type);
    x->data = dst;
    if (shared) w.classifier = *x;
    dst += matrix_bytes(*x);
  }
  assert(dst == m.repacked.data() + m.repacked.size());
}

uint64_t bytes_of(const std::vector<Matrix*>& todo) {
  uint64_t total = 0;
  for (const Matrix* x : todo) total += matrix_bytes(*x);
  return total;
}

}  // namespace

uint64_t repacked_bytes(Model& m) { return bytes_of(repackable_matrices(m)); }

uint64_t repack_weights(Model& m) {
  const std::vector<Matrix*> todo = repackable_matrices(m);
  const uint64_t total = bytes_of(todo);
  if (total == 0) return 0;
  m.repacked = AnonymousMemory::allocate(total);
  if (!m.repacked.data())
    fail(m.path, "cannot allocate " + std::to_string(total >> 20) + " MiB to repack the weights (--no-repack reads them in place)");
  lay_out(m, todo, [&](const Matrix& x, uint8_t* dst) {
    // About 1 MiB of source at a time, so that at most that much is resident twice.
    constexpr uint64_t kPieceBytes = 1 << 20;
    const int64_t groups = x.rows / 8;
    const uint64_t group_bytes = matrix_bytes(x) / uint64_t(groups);
    const int64_t per_piece = int64_t(kPieceBytes / group_bytes) + 1;
    const uint8_t* src = static_cast<const uint8_t*>(x.data);
    for (int64_t g0 = 0; g0 < groups; g0 += per_piece) {
      const int64_t g1 = std::min(groups, g0 + per_piece);
      repack_matrix(dst, x, g0, g1);
      m.file.drop_pages(src + uint64_t(g0) * group_bytes, uint64_t(g1 - g0) * group_bytes);
    }
  });
  return total;
}

void use_repacked(Model& m, AnonymousMemory repacked) {
  const std::vector<Matrix*> todo = repackable_matrices(m);
  if (const uint64_t want = bytes_of(todo); repacked.size() != want)
    fail(m.path, "repacked weights of " + std::to_string(repacked.size()) + " bytes for a model that repacks to " +
                     std::to_string(want));
  m.repacked = std::move(repacked);
  lay_out(m, todo, [](const Matrix&, uint8_t*) {});
}

}  // namespace bf

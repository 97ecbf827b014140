#include "engine/sampler.h"

#include <algorithm>
#include <cassert>

#include "kernels/kernels.h"

namespace bf {

Sampler::Sampler(int vocab_size, float temperature, float topp, uint64_t seed)
    : vocab_size_(vocab_size), temperature_(temperature), topp_(topp), state_(seed),
      probindex_(size_t(vocab_size)) {
  assert(vocab_size > 0);
}

uint32_t Sampler::random_u32(uint64_t* state) {
  *state ^= *state >> 12;
  *state ^= *state << 25;
  *state ^= *state >> 27;
  return uint32_t((*state * 0x2545F4914F6CDD1Dull) >> 32);
}

float Sampler::random_f32(uint64_t* state) { return float(random_u32(state) >> 8) / 16777216.0f; }

int argmax(const float* x, int n) {
  // run.c's loop (`if (x[i] > x[best]) best = i`) carries one dependency through all 32K logits:
  // ~100 us a token, on the critical path of every decode step. Its answer is the first index of
  // the largest non-NaN value, or 0 when x[0] is NaN (nothing compares greater than it): found
  // here with 8 independent maxima, then one scan for the first equal value.
  if (n <= 0 || x[0] != x[0]) return 0;
  constexpr int kLanes = 8;
  float m[kLanes];
  for (int j = 0; j < kLanes; j++) m[j] = x[0];
  int i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; j++) m[j] = x[i + j] > m[j] ? x[i + j] : m[j];
  for (; i < n; i++) m[0] = x[i] > m[0] ? x[i] : m[0];
  float best = m[0];
  for (int j = 1; j < kLanes; j++) best = m[j] > best ? m[j] : best;
  for (i = 0; i < n && x[i] != best; i++) {
  }
  return i;  // < n: best is one of x's values
}

int Sampler::sample(float* logits) {
  const int n = vocab_size_;
  if (temperature_ == 0.0f) return argmax(logits, n);
  for (int i = 0; i < n; i++) logits[i] /= temperature_;
  reference_kernels().softmax(logits, n);
  const float coin = random_f32(&state_);
  if (topp_ <= 0.0f || topp_ >= 1.0f) {
    float cdf = 0.0f;
    for (int i = 0; i < n; i++) {
      cdf += logits[i];
      if (coin < cdf) return i;
    }
    return n - 1;  // rounding
  }
  return sample_topp(logits, coin);
}

int Sampler::sample_topp(const float* probs, float coin) {
  const int n = vocab_size_;
  if (n == 1) return 0;
  // Tokens below this probability cannot be in the nucleus; dropping them first keeps the sort small.
  const float cutoff = (1.0f - topp_) / float(n - 1);
  size_t n0 = 0;
  for (int i = 0; i < n; i++)
    if (probs[i] >= cutoff) probindex_[n0++] = {probs[i], i};
  if (n0 == 0) {  // near-uniform probabilities and a tiny top-p (run.c would read out of bounds)
    int best = 0;
    for (int i = 1; i < n; i++)
      if (probs[i] > probs[best]) best = i;
    return best;
  }
  // run.c uses qsort, a stable merge sort in glibc: ties keep index order.
  std::sort(probindex_.begin(), probindex_.begin() + std::ptrdiff_t(n0), [](const ProbIndex& a, const ProbIndex& b) {
    return a.prob > b.prob || (a.prob == b.prob && a.index < b.index);
  });
  float cumulative = 0.0f;
  size_t last = n0 - 1;
  for (size_t i = 0; i < n0; i++) {
    cumulative += probindex_[i].prob;
    if (cumulative > topp_) {
      last = i;
      break;
    }
  }
  const float r = coin * cumulative;
  float cdf = 0.0f;
  for (size_t i = 0; i <= last; i++) {
    cdf += probindex_[i].prob;
    if (r < cdf) return probindex_[i].index;
  }
  return probindex_[last].index;
}

}  // namespace bf

// Token sampling exactly as llama2.c run.c: greedy, temperature, top-p (nucleus), xorshift64* RNG.
#pragma once

#include <cstdint>
#include <vector>

namespace bf {

// Greedy decoding: the index run.c's argmax loop returns (the first largest value; 0 when x[0] is NaN).
int argmax(const float* x, int n);

class Sampler {
 public:
  Sampler(int vocab_size, float temperature, float topp, uint64_t seed);
  // Samples from logits; modifies them in place (temperature scaling, softmax), as run.c does.
  int sample(float* logits);

  static uint32_t random_u32(uint64_t* state);
  static float random_f32(uint64_t* state);

 private:
  struct ProbIndex {
    float prob;
    int index;
  };
  int sample_topp(const float* probs, float coin);

  int vocab_size_;
  float temperature_, topp_;
  uint64_t state_;
  std::vector<ProbIndex> probindex_;  // top-p scratch, allocated once
};

}  // namespace bf

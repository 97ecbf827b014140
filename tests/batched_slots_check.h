// Shared by the engine tests (real models) and the synthetic-model tests (every weight type):
// several sequences decoded together through Transformer::forward_batch must give, row for row,
// the logits each gets alone from forward().
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "engine/model.h"
#include "engine/transformer.h"

namespace bf::testing {

// Four sequences over three slots: staggered starts, prompts of several tokens run in the same
// batch as other slots' decode tokens (their logits not asked for but the last one's), and slot 2
// reused from position 0 by a fourth sequence once its first is done.
inline void expect_batched_slots_match_forward(const Model& m, const Kernels& k, int threads, const char* what) {
  const int vocab = m.config.vocab_size;
  struct Seq {
    int slot, start, prompt, length;
    std::vector<int> tokens;
    std::vector<std::vector<float>> want;  // logits after each position, alone
    int fed = 0;
  };
  std::vector<Seq> seqs = {{0, 0, 5, 20, {}, {}}, {1, 2, 9, 26, {}, {}}, {2, 4, 1, 8, {}, {}}, {2, 0, 3, 10, {}, {}}};
  for (size_t s = 0; s < seqs.size(); s++) {
    Seq& q = seqs[s];
    ASSERT_LE(q.length, m.config.seq_len) << what;
    for (int i = 0; i < q.length; i++) q.tokens.push_back(int((i * 31 + s * 7 + 3) % size_t(vocab)));
    Transformer alone(m, k, 1);
    for (int i = 0; i < q.length; i++) {
      const float* l = alone.forward(q.tokens[size_t(i)], i);
      q.want.emplace_back(l, l + vocab);
    }
  }
  Transformer t(m, k, threads, 0, 3);
  ASSERT_EQ(t.slots(), 3);
  seqs[3].start = -1;  // starts when sequence 2 ends
  for (int step = 0; step < 64; step++) {
    std::vector<BatchToken> batch;
    std::vector<std::pair<size_t, int>> rows;  // (sequence, position) of each logits row
    for (size_t s = 0; s < seqs.size(); s++) {
      Seq& q = seqs[s];
      if (q.start < 0 || step < q.start || q.fed == q.length) continue;
      const int n = q.fed == 0 ? q.prompt : 1;
      for (int i = 0; i < n; i++, q.fed++) {
        const bool logits = i == n - 1;
        batch.push_back({q.tokens[size_t(q.fed)], q.fed, q.slot, logits});
        if (logits) rows.emplace_back(s, q.fed);
      }
      if (s == 2 && q.fed == q.length) seqs[3].start = step + 1;
    }
    if (batch.empty()) break;
    const float* logits = t.forward_batch(batch.data(), int(batch.size()));
    for (size_t r = 0; r < rows.size(); r++) {
      const auto [s, pos] = rows[r];
      ASSERT_EQ(std::memcmp(logits + r * size_t(vocab), seqs[s].want[size_t(pos)].data(), size_t(vocab) * 4), 0)
          << what << ": sequence " << s << " position " << pos << " at step " << step << " (batch of " << batch.size()
          << ")";
    }
  }
  for (const Seq& q : seqs) ASSERT_EQ(q.fed, q.length) << what;
}

}  // namespace bf::testing

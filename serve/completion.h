// One completion: bareflow generate's loop (cli/run.cpp) from a tokenized prompt, cut into steps so
// that a scheduler can run many at once (serve) or one to the end (chat, complete()). The text after
// the prompt is handed out piece by piece with stop strings applied.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/model.h"
#include "engine/sampler.h"
#include "engine/tokenizer.h"
#include "engine/transformer.h"

namespace bf::serve {

// What a completion asks for (checked by its caller).
struct Sampling {
  std::string prompt;
  int64_t max_tokens = -1;                 // -1: until the context ends
  float temperature = 1.0f, top_p = 0.9f;  // bareflow generate's (run.c's) defaults
  uint64_t seed = 0;
  bool seed_given = false, stream = false;
  std::vector<std::string> stop;
};

// How it ended.
struct Outcome {
  std::string text;
  int prompt_tokens = 0, completion_tokens = 0;
  std::string finish = "length";  // "length", or "stop" (end of text or a stop string)
  std::string stopped_by;         // the stop string, if one
  bool aborted = false;           // the client went away
  double seconds = 0;             // from the start (prefill) to the end
};

// `tokens` (BOS first, at most the context) from position 0 of one KV cache slot: the same prompt,
// sampling and seed give exactly generate's text after the prompt. The caller runs the transformer:
// prompt_ahead() tokens from pos() without logits (prefill), then forward(token(), pos()) and its
// logits into step(), until done().
class Completion {
 public:
  Completion(const Model& model, const Tokenizer& tokenizer, std::vector<int> tokens, const Sampling& s);

  bool done() const { return done_; }
  // The next token to run and its position.
  int token() const { return token_; }
  int pos() const { return pos_; }
  // Prompt tokens from pos() on that may be run without their logits (all but the last one's).
  int prompt_ahead() const { return done_ ? 0 : std::max(0, std::min(steps_, n_prompt_ - 1) - pos_); }
  const int* prompt_at_pos() const { return tokens_.data() + pos_; }
  // The first n of prompt_ahead() went into the KV cache.
  void skip(int n);
  // The logits of forward(token(), pos()) (ignored for a prompt token); returns the text that may
  // now be handed out ("" while a stop string may be starting), at the end all that is left.
  std::string step(float* logits);
  // The client went away: done, nothing more is handed out.
  void abort();
  const Outcome& outcome() const { return out_; }

 private:
  // pos_++ onto `next`: false (and done) at the end of the text.
  bool advance(int next);
  void finish();

  const Model& model_;
  const Tokenizer& tokenizer_;
  const std::vector<int> tokens_;
  const Sampling s_;
  const int n_prompt_;
  int steps_;  // positions to run: the prompt's but the last, then the tokens wanted
  Sampler sampler_;
  int token_, pos_ = 0;
  bool done_ = false;
  size_t emitted_ = 0;  // bytes of out_.text handed out
  Outcome out_;
  std::chrono::steady_clock::time_point start_;
};

// A Completion run to the end through `transformer` (slot 0), the prompt prefilled when `prefill`;
// emit gets each piece of text and returns false when the client went away.
Outcome complete(Transformer& transformer, const Model& model, const Tokenizer& tokenizer, const std::vector<int>& tokens,
                 const Sampling& s, bool prefill, const std::function<bool(const std::string&)>& emit);

}  // namespace bf::serve

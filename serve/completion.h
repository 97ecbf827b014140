// One completion: bareflow generate's loop (cli/run.cpp) from a tokenized prompt, with the text
// after the prompt handed out piece by piece and stop strings applied. serve and chat share it.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/model.h"
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
  bool aborted = false;           // emit returned false (the client went away)
  double seconds = 0;             // prefill and decoding
};

// `tokens` (BOS first, at most the context) through `transformer` from position 0: the same
// prompt, sampling and seed give exactly generate's text after the prompt. A stop string ends the
// text before it; text that may be the start of one is held back from `emit` until it is not.
Outcome complete(Transformer& transformer, const Model& model, const Tokenizer& tokenizer, const std::vector<int>& tokens,
                 const Sampling& s, bool prefill, const std::function<bool(const std::string&)>& emit);

}  // namespace bf::serve

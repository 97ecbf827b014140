#include "serve/completion.h"

#include <algorithm>
#include <chrono>
#include <random>

#include "engine/sampler.h"

namespace bf::serve {

using Clock = std::chrono::steady_clock;

Outcome complete(Transformer& transformer, const Model& model, const Tokenizer& tokenizer, const std::vector<int>& tokens,
                 const Sampling& p, bool prefill, const std::function<bool(const std::string&)>& emit) {
  // bareflow generate's loop (cli/run.cpp), the prompt's own pieces not emitted: so that the same
  // prompt, sampling flags and seed give generate's text after the prompt.
  Outcome out;
  const Config& c = model.config;
  const int n_prompt = int(tokens.size());
  out.prompt_tokens = n_prompt;
  const int64_t room = int64_t(c.seq_len) - n_prompt + 1;  // tokens the context still has room for
  const int64_t want = p.max_tokens < 0 ? room : std::min<int64_t>(p.max_tokens, room);
  const int steps = int(n_prompt - 1 + want);
  uint64_t seed = p.seed;
  if (!p.seed_given) seed = std::random_device{}() | 1;  // run.c: 0 means "from the clock"
  Sampler sampler(c.vocab_size, p.temperature, p.top_p, seed == 0 ? 1 : seed);
  const int batch = prefill ? std::min(steps, n_prompt - 1) : 0;
  const Clock::time_point start = Clock::now();
  if (batch > 0) transformer.prefill(tokens.data(), batch, 0);
  int token = tokens[0];
  size_t emitted = 0;  // bytes of out.text handed to emit
  for (int pos = 0; pos < steps;) {
    float* logits = pos < batch ? nullptr : transformer.forward(token, pos);
    const int next = pos + 1 < n_prompt ? tokens[size_t(pos) + 1] : sampler.sample(logits);
    pos++;
    if (next == tokenizer.bos() || (model.vocab && next == tokenizer.eos())) {
      out.finish = "stop";
      break;
    }
    const std::string piece = tokenizer.decode(token, next);
    token = next;
    if (pos < n_prompt) continue;  // a prompt token
    out.completion_tokens++;
    out.text += piece;
    // A stop string ends the text before it; text that may be the start of one is held back.
    size_t hold = 0;
    for (const std::string& s : p.stop) {
      if (const size_t at = out.text.find(s, emitted > s.size() ? emitted - s.size() : 0); at != std::string::npos) {
        out.text.resize(at);
        out.finish = "stop";
        out.stopped_by = s;
        break;
      }
      for (size_t k = std::min(s.size() - 1, out.text.size()); k > hold; k--)
        if (out.text.compare(out.text.size() - k, k, s, 0, k) == 0) {
          hold = k;
          break;
        }
    }
    if (!out.stopped_by.empty()) break;
    if (out.text.size() - hold > emitted) {
      if (!emit(out.text.substr(emitted, out.text.size() - hold - emitted))) {
        out.aborted = true;
        break;
      }
      emitted = out.text.size() - hold;
    }
  }
  if (!out.aborted && out.text.size() > emitted) out.aborted = !emit(out.text.substr(emitted));
  out.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return out;
}

}  // namespace bf::serve

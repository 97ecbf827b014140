#include "serve/completion.h"

#include <algorithm>
#include <cassert>
#include <random>

namespace bf::serve {

using Clock = std::chrono::steady_clock;

namespace {
uint64_t seed_of(const Sampling& s) {
  const uint64_t seed = s.seed_given ? s.seed : (std::random_device{}() | 1);  // run.c: 0 means "from the clock"
  return seed == 0 ? 1 : seed;
}
}  // namespace

// bareflow generate's loop (cli/run.cpp), the prompt's own pieces not handed out: so that the same
// prompt, sampling flags and seed give generate's text after the prompt.
Completion::Completion(const Model& model, const Tokenizer& tokenizer, std::vector<int> tokens, const Sampling& s)
    : model_(model), tokenizer_(tokenizer), tokens_(std::move(tokens)), s_(s), n_prompt_(int(tokens_.size())),
      sampler_(model.config.vocab_size, s.temperature, s.top_p, seed_of(s)), start_(Clock::now()) {
  assert(n_prompt_ >= 1 && n_prompt_ <= model.config.seq_len);
  out_.prompt_tokens = n_prompt_;
  const int64_t room = int64_t(model.config.seq_len) - n_prompt_ + 1;  // tokens the context still has room for
  const int64_t want = s.max_tokens < 0 ? room : std::min<int64_t>(s.max_tokens, room);
  steps_ = int(n_prompt_ - 1 + want);
  token_ = tokens_[0];
  if (pos_ >= steps_) finish();
}

bool Completion::advance(int next) {
  pos_++;
  if (next == tokenizer_.bos() || (model_.vocab && next == tokenizer_.eos())) {
    out_.finish = "stop";
    finish();
    return false;
  }
  return true;
}

void Completion::skip(int n) {
  assert(n >= 0 && n <= prompt_ahead());
  for (int i = 0; i < n && !done_; i++)
    if (advance(tokens_[size_t(pos_) + 1])) token_ = tokens_[size_t(pos_)];
  if (!done_ && pos_ >= steps_) finish();
}

std::string Completion::step(float* logits) {
  assert(!done_ && pos_ < steps_);
  const int next = pos_ + 1 < n_prompt_ ? tokens_[size_t(pos_) + 1] : sampler_.sample(logits);
  if (!advance(next)) {  // the end of the text: what was held back goes out
    const size_t from = emitted_;
    emitted_ = out_.text.size();
    return out_.text.substr(from);
  }
  const std::string piece = tokenizer_.decode(token_, next);
  token_ = next;
  if (pos_ < n_prompt_) return "";  // a prompt token
  out_.completion_tokens++;
  out_.text += piece;
  // A stop string ends the text before it; text that may be the start of one is held back.
  size_t hold = 0;
  for (const std::string& stop : s_.stop) {
    const size_t from = emitted_ > stop.size() ? emitted_ - stop.size() : 0;
    if (const size_t at = out_.text.find(stop, from); at != std::string::npos) {
      out_.text.resize(at);
      out_.finish = "stop";
      out_.stopped_by = stop;
      finish();
      break;
    }
    for (size_t k = std::min(stop.size() - 1, out_.text.size()); k > hold; k--)
      if (out_.text.compare(out_.text.size() - k, k, stop, 0, k) == 0) {
        hold = k;
        break;
      }
  }
  if (!done_ && pos_ >= steps_) finish();
  const size_t end = done_ ? out_.text.size() : out_.text.size() - hold;
  const size_t from = emitted_;
  emitted_ = std::max(emitted_, end);
  return end > from ? out_.text.substr(from, end - from) : "";
}

void Completion::abort() {
  out_.aborted = true;
  finish();
}

void Completion::finish() {
  if (!done_) out_.seconds = std::chrono::duration<double>(Clock::now() - start_).count();
  done_ = true;
}

Outcome complete(Transformer& transformer, const Model& model, const Tokenizer& tokenizer, const std::vector<int>& tokens,
                 const Sampling& s, bool prefill, const std::function<bool(const std::string&)>& emit) {
  Completion c(model, tokenizer, tokens, s);
  if (prefill && c.prompt_ahead() > 0) {
    const int n = c.prompt_ahead();
    transformer.prefill(c.prompt_at_pos(), n, c.pos());
    c.skip(n);
  }
  while (!c.done()) {
    const std::string text = c.step(transformer.forward(c.token(), c.pos()));
    if (!text.empty() && !emit(text)) c.abort();
  }
  return c.outcome();
}

}  // namespace bf::serve

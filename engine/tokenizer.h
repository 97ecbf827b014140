// SentencePiece-style BPE as llama2.c does it: encode by merge score with byte fallback,
// decode that strips the space after BOS and turns <0xXX> pieces into raw bytes.
#pragma once

#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/model.h"

namespace bf {

class Tokenizer {
 public:
  // llama2.c tokenizer.bin; its token count must equal the model's vocabulary size.
  static Tokenizer from_file(const std::string& path, int model_vocab_size);
  static Tokenizer from_bytes(const std::string& name, std::string_view bytes, int model_vocab_size);
  // `name` is used in messages (the model file the vocabulary came from).
  static Tokenizer from_vocab(const EmbeddedVocab& vocab, const std::string& name = "embedded tokenizer");

  // Throws Error if the text cannot fit in `max_tokens` tokens.
  std::vector<int> encode(std::string_view text, bool bos, bool eos, size_t max_tokens) const;
  // The bytes to print for `token` following `prev`.
  std::string decode(int prev, int token) const;

  int vocab_size() const { return int(pieces_.size()); }
  int bos() const { return bos_; }
  int eos() const { return eos_; }
  const std::string& piece(int id) const { return pieces_[size_t(id)]; }
  float score(int id) const { return scores_[size_t(id)]; }

 private:
  // Checks that BOS and EOS are tokens of the vocabulary, then indexes it.
  void build_index(const std::string& name);
  int lookup(std::string_view s) const;
  // Applies run.c's merges to `tokens[first..]` in place.
  void merge(std::vector<int>& tokens, size_t first) const;

  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  std::unordered_map<std::string_view, int> index_;  // views into pieces_
  int byte_token_[256] = {};
  size_t max_piece_len_ = 1;
  int bos_ = 1, eos_ = 2;
};

}  // namespace bf

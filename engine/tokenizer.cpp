#include "engine/tokenizer.h"

#include <cstdio>
#include <cstring>

namespace bf {

Tokenizer Tokenizer::from_file(const std::string& path, int model_vocab_size) {
  MappedFile f = MappedFile::open(path);
  return from_bytes(path, {reinterpret_cast<const char*>(f.data()), f.size()}, model_vocab_size);
}

Tokenizer Tokenizer::from_bytes(const std::string& name, std::string_view bytes, int model_vocab_size) {
  // Layout: int32 max_token_length, then per token: f32 score, int32 length, bytes.
  size_t pos = 0;
  auto take = [&](size_t n, const char* what) {
    if (n > bytes.size() - pos)
      fail(name, std::string("truncated tokenizer: ") + what + " at offset " + std::to_string(pos));
    const char* p = bytes.data() + pos;
    pos += n;
    return p;
  };
  int32_t max_len;
  std::memcpy(&max_len, take(4, "max_token_length"), 4);
  if (max_len <= 0 || max_len > 4096)
    fail(name, "max_token_length " + std::to_string(max_len) + " is out of range");
  Tokenizer t;
  while (pos < bytes.size()) {
    if (t.pieces_.size() >= size_t(1) << 22) fail(name, "too many tokens");
    float score;
    int32_t len;
    std::memcpy(&score, take(4, "token score"), 4);
    std::memcpy(&len, take(4, "token length"), 4);
    if (len < 0 || len > max_len)
      fail(name, "token " + std::to_string(t.pieces_.size()) + " has length " + std::to_string(len) +
                     " (max_token_length " + std::to_string(max_len) + ")");
    t.pieces_.emplace_back(take(size_t(len), "token bytes"), size_t(len));
    t.scores_.push_back(score);
  }
  if (t.vocab_size() != model_vocab_size)
    fail(name, "tokenizer has " + std::to_string(t.vocab_size()) + " tokens but the model's vocabulary has " +
                   std::to_string(model_vocab_size));
  t.build_index();
  return t;
}

Tokenizer Tokenizer::from_vocab(const EmbeddedVocab& vocab) {
  Tokenizer t;
  t.pieces_ = vocab.pieces;
  t.scores_ = vocab.scores;
  t.bos_ = vocab.bos;
  t.eos_ = vocab.eos;
  t.build_index();
  return t;
}

void Tokenizer::build_index() {
  index_.clear();
  index_.reserve(pieces_.size());
  max_piece_len_ = 1;
  for (size_t i = 0; i < pieces_.size(); i++) {
    index_.emplace(pieces_[i], int(i));  // first occurrence wins
    max_piece_len_ = std::max(max_piece_len_, pieces_[i].size());
  }
  for (int b = 0; b < 256; b++) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    const int id = lookup(name);
    // llama2.c's convention when the piece is absent: byte b is token b + 3.
    byte_token_[b] = id >= 0 ? id : (b + 3 < vocab_size() ? b + 3 : 0);
  }
}

int Tokenizer::lookup(std::string_view s) const {
  const auto it = index_.find(s);
  return it == index_.end() ? -1 : it->second;
}

std::vector<int> Tokenizer::encode(std::string_view text, bool bos, bool eos, size_t max_tokens) const {
  // Every token covers at most max_piece_len_ bytes: a longer text cannot fit, whatever merges.
  if (text.size() / max_piece_len_ > max_tokens)
    fail("prompt", "is " + std::to_string(text.size()) + " bytes, longer than the context of " +
                       std::to_string(max_tokens) + " tokens");
  std::vector<int> tokens;
  tokens.reserve(text.size() + 3);
  if (bos) tokens.push_back(bos_);
  // SentencePiece's dummy prefix: a leading space before non-empty text.
  if (!text.empty()) {
    const int space = lookup(" ");
    tokens.push_back(space >= 0 ? space : byte_token_[uint8_t(' ')]);
  }
  // One UTF-8 code point at a time; unknown ones fall back to their bytes.
  for (size_t i = 0; i < text.size();) {
    size_t len = 1;
    while (len < 4 && i + len < text.size() && (uint8_t(text[i + len]) & 0xC0) == 0x80) len++;
    const int id = lookup(text.substr(i, len));
    if (id >= 0) {
      tokens.push_back(id);
    } else {
      for (size_t j = 0; j < len; j++) tokens.push_back(byte_token_[uint8_t(text[i + j])]);
    }
    i += len;
  }
  // Merge the adjacent pair whose union has the best score until none is in the vocabulary.
  const size_t first = bos ? 1 : 0;  // BOS never merges
  std::string pair;
  while (true) {
    float best_score = -1e10f;
    int best_id = -1;
    size_t best_at = 0;
    for (size_t i = first; i + 1 < tokens.size(); i++) {
      pair = pieces_[size_t(tokens[i])];
      pair += pieces_[size_t(tokens[i + 1])];
      const int id = lookup(pair);
      if (id >= 0 && scores_[size_t(id)] > best_score) {
        best_score = scores_[size_t(id)];
        best_id = id;
        best_at = i;
      }
    }
    if (best_id < 0) break;
    tokens[best_at] = best_id;
    tokens.erase(tokens.begin() + std::ptrdiff_t(best_at) + 1);
  }
  if (eos) tokens.push_back(eos_);
  if (tokens.size() > max_tokens)
    fail("prompt", "is " + std::to_string(tokens.size()) + " tokens, longer than the context of " +
                       std::to_string(max_tokens) + " tokens");
  return tokens;
}

std::string Tokenizer::decode(int prev, int token) const {
  std::string_view piece = pieces_[size_t(token)];
  if (prev == bos_ && !piece.empty() && piece[0] == ' ') piece.remove_prefix(1);
  // "<0xXX>" is a raw byte.
  if (piece.size() == 6 && piece.substr(0, 3) == "<0x" && piece[5] == '>') {
    auto hex = [](char ch) {
      if (ch >= '0' && ch <= '9') return ch - '0';
      if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
      if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
      return -1;
    };
    const int hi = hex(piece[3]), lo = hex(piece[4]);
    if (hi >= 0 && lo >= 0) return std::string(1, char(hi * 16 + lo));
  }
  return std::string(piece);
}

}  // namespace bf

#include "engine/tokenizer.h"

#include <algorithm>
#include <cstdio>
#include <utility>
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
  const size_t tokens_at = pos;
  // Walks the tokens, calling `add(score, piece)` for each. Run once to count, so that nothing is
  // built for a file whose token count is wrong (memory stays bounded by the model's vocabulary).
  auto walk = [&](auto add) {
    pos = tokens_at;
    size_t n = 0;
    while (pos < bytes.size()) {
      if (n >= size_t(1) << 22) fail(name, "too many tokens");
      float score;
      int32_t len;
      std::memcpy(&score, take(4, "token score"), 4);
      std::memcpy(&len, take(4, "token length"), 4);
      if (len < 0 || len > max_len)
        fail(name, "token " + std::to_string(n) + " has length " + std::to_string(len) +
                       " (max_token_length " + std::to_string(max_len) + ")");
      add(score, std::string_view(take(size_t(len), "token bytes"), size_t(len)));
      n++;
    }
    return n;
  };
  const size_t count = walk([](float, std::string_view) {});
  if (count != size_t(model_vocab_size))
    fail(name, "tokenizer has " + std::to_string(count) + " tokens but the model's vocabulary has " +
                   std::to_string(model_vocab_size));
  Tokenizer t;
  t.pieces_.reserve(count);
  t.scores_.reserve(count);
  walk([&](float score, std::string_view piece) {
    t.pieces_.emplace_back(piece);
    t.scores_.push_back(score);
  });
  t.build_index(name);
  return t;
}

Tokenizer Tokenizer::from_vocab(const EmbeddedVocab& vocab, const std::string& name) {
  Tokenizer t;
  t.pieces_ = vocab.pieces;
  t.scores_ = vocab.scores;
  t.scores_.resize(t.pieces_.size(), 0.0f);
  t.bos_ = vocab.bos;
  t.eos_ = vocab.eos;
  t.build_index(name);
  return t;
}

void Tokenizer::build_index(const std::string& name) {
  // Every special id is used as an index (decode, the generate loop): check each once, here.
  const int n = vocab_size();
  for (const auto& [what, id] : {std::pair{"BOS", bos_}, std::pair{"EOS", eos_}})
    if (id < 0 || id >= n)
      fail(name, std::string(what) + " token id " + std::to_string(id) + " is not in the vocabulary of " +
                     std::to_string(n) + (n == 1 ? " token" : " tokens"));
  index_.clear();
  index_.reserve(pieces_.size());
  max_piece_len_ = 1;
  for (size_t i = 0; i < pieces_.size(); i++) {
    index_.emplace(pieces_[i], int(i));  // first occurrence wins
    max_piece_len_ = std::max(max_piece_len_, pieces_[i].size());
  }
  for (int b = 0; b < 256; b++) {
    char piece[8];
    std::snprintf(piece, sizeof piece, "<0x%02X>", b);
    const int id = lookup(piece);
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
  merge(tokens, bos ? 1 : 0);  // BOS never merges
  if (eos) tokens.push_back(eos_);
  if (tokens.size() > max_tokens)
    fail("prompt", "is " + std::to_string(tokens.size()) + " tokens, longer than the context of " +
                       std::to_string(max_tokens) + " tokens");
  return tokens;
}

// run.c merges, again and again, the adjacent pair whose union is a token of the best score (the
// leftmost on ties; a score must beat -1e10). This does the same merges in the same order in
// O(n log n): every adjacent pair that is a token waits in a heap ordered by (score, position of its
// left symbol); the symbols form a linked list, so a merge is O(1) and queues the two pairs it
// creates. Queued pairs whose symbols have changed since are recognized by version and skipped.
void Tokenizer::merge(std::vector<int>& tokens, size_t first) const {
  const size_t n = tokens.size();
  if (n < first + 2) return;
  constexpr uint32_t kEnd = UINT32_MAX;
  std::vector<uint32_t> prev(n), next(n), version(n, 0);
  for (size_t i = first; i < n; i++) {
    prev[i] = i == first ? kEnd : uint32_t(i - 1);
    next[i] = i + 1 == n ? kEnd : uint32_t(i + 1);
  }
  struct Pair {
    float score;
    int id;
    uint32_t left, right, left_version, right_version;
  };
  // std::push_heap keeps the greatest on top: the best score, then the leftmost.
  const auto below = [](const Pair& a, const Pair& b) {
    if (a.score != b.score) return a.score < b.score;
    return a.left > b.left;
  };
  std::vector<Pair> heap;
  heap.reserve(n);
  std::string joined;
  const auto offer = [&](uint32_t l, uint32_t r) {
    joined = pieces_[size_t(tokens[l])];
    joined += pieces_[size_t(tokens[r])];
    const int id = lookup(joined);
    if (id < 0) return;
    const float score = scores_[size_t(id)];
    if (!(score > -1e10f)) return;  // run.c's search starts at -1e10 with a strict >: never merged
    heap.push_back({score, id, l, r, version[l], version[r]});
    std::push_heap(heap.begin(), heap.end(), below);
  };
  for (size_t i = first; i + 1 < n; i++) offer(uint32_t(i), uint32_t(i + 1));
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), below);
    const Pair p = heap.back();
    heap.pop_back();
    if (tokens[p.left] < 0 || tokens[p.right] < 0 || next[p.left] != p.right ||
        version[p.left] != p.left_version || version[p.right] != p.right_version)
      continue;  // stale: one of its symbols was merged away or changed
    tokens[p.left] = p.id;
    version[p.left]++;
    tokens[p.right] = -1;
    next[p.left] = next[p.right];
    if (next[p.left] != kEnd) prev[next[p.left]] = p.left;
    if (prev[p.left] != kEnd) offer(prev[p.left], p.left);
    if (next[p.left] != kEnd) offer(p.left, next[p.left]);
  }
  tokens.erase(std::remove(tokens.begin() + std::ptrdiff_t(first), tokens.end(), -1), tokens.end());
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

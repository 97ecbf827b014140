#include "bench/synthetic.h"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>

#include "engine/error.h"

namespace bf::bench {
namespace {

constexpr uint64_t kAlign = 32;  // GGUF default general.alignment

enum : uint32_t { kTypeU32 = 4, kTypeI32 = 5, kTypeF32 = 6, kTypeString = 8, kTypeArray = 9 };
enum : uint32_t { kGgmlF32 = 0, kGgmlF16 = 1, kGgmlQ4_0 = 2, kGgmlQ8_0 = 8 };

uint64_t splitmix(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

struct Tensor {
  std::string name;
  uint64_t ne0, ne1;  // ne1 = 1 for vectors
  uint32_t ggml;
  uint64_t offset = 0, bytes = 0;
};

uint64_t tensor_bytes(uint32_t ggml, uint64_t n) {
  switch (ggml) {
    case kGgmlF32: return n * 4;
    case kGgmlF16: return n * 2;
    case kGgmlQ8_0: return n / kBlock * sizeof(BlockQ8_0);
    default: return n / kBlock * sizeof(BlockQ4_0);
  }
}

class Writer {
 public:
  Writer(const std::string& path) : path_(path), f_(std::fopen(path.c_str(), "wb")) {
    if (!f_) fail(path, "cannot create synthetic model file");
  }
  ~Writer() {
    if (f_) std::fclose(f_);
  }
  void bytes(const void* p, size_t n) {
    if (std::fwrite(p, 1, n, f_) != n) fail(path_, "write failed (disk full?)");
    size_ += n;
  }
  template <typename T>
  void put(T v) {
    bytes(&v, sizeof v);
  }
  void str(const std::string& s) {
    put<uint64_t>(s.size());
    bytes(s.data(), s.size());
  }
  void pad() {
    static const char zeros[kAlign] = {};
    bytes(zeros, size_t((kAlign - size_ % kAlign) % kAlign));
  }
  uint64_t size() const { return size_; }
  void close() {
    if (std::fclose(f_) != 0) fail(path_, "write failed");
    f_ = nullptr;
  }

 private:
  std::string path_;
  FILE* f_;
  uint64_t size_ = 0;
};

// Streams one tensor's random contents. Values are uniform in +-amp, so activations keep the scale
// of a trained model and nothing overflows over many layers.
void write_tensor(Writer& w, const Tensor& t, uint64_t seed, float amp, bool norm) {
  constexpr size_t kChunk = 1 << 20;  // elements per buffer (a multiple of the block size)
  std::unique_ptr<uint8_t[]> buf(new uint8_t[kChunk * 4]);
  uint64_t s = seed;
  for (const char ch : t.name) s = s * 131 + uint8_t(ch);
  const uint64_t n = t.ne0 * t.ne1;
  for (uint64_t done = 0; done < n; done += kChunk) {
    const size_t m = size_t(std::min<uint64_t>(kChunk, n - done));
    uint8_t* p = buf.get();
    size_t bytes = 0;
    if (t.ggml == kGgmlF32 || t.ggml == kGgmlF16) {
      for (size_t i = 0; i < m; i++) {
        const uint64_t r = splitmix(s);
        const float u = float(r >> 40) * (1.0f / 16777216.0f) * 2.0f - 1.0f;  // [-1, 1)
        const float v = norm ? 1.0f + 0.1f * u : amp * u;
        if (t.ggml == kGgmlF32) {
          std::memcpy(p + 4 * i, &v, 4);
        } else {
          const uint16_t h = f32_to_fp16(v);
          std::memcpy(p + 2 * i, &h, 2);
        }
      }
      bytes = m * (t.ggml == kGgmlF32 ? 4 : 2);
    } else {
      const bool q8 = t.ggml == kGgmlQ8_0;
      const uint16_t d = f32_to_fp16(q8 ? amp / 127.0f : amp / 8.0f);
      const size_t block_bytes = q8 ? sizeof(BlockQ8_0) : sizeof(BlockQ4_0);
      for (size_t b = 0; b < m / kBlock; b++) {
        uint8_t* blk = p + b * block_bytes;
        std::memcpy(blk, &d, 2);
        for (size_t k = 2; k < block_bytes; k += 8) {
          const uint64_t r = splitmix(s);
          std::memcpy(blk + k, &r, std::min<size_t>(8, block_bytes - k));
        }
        if (q8)  // -128 is not a value quantization produces
          for (size_t k = 2; k < block_bytes; k++)
            if (blk[k] == 0x80) blk[k] = 0x81;
      }
      bytes = m / kBlock * block_bytes;
    }
    w.bytes(p, bytes);
  }
}

}  // namespace

const std::vector<ModelShape>& known_shapes() {
  static const std::vector<ModelShape> shapes = {
      {"stories15M", 288, 768, 6, 6, 6, 32000, 256, true},
      {"stories42M", 512, 1376, 8, 8, 8, 32000, 1024, true},
      {"stories110M", 768, 2048, 12, 12, 12, 32000, 1024, true},
      {"tinyllama-1.1b", 2048, 5632, 22, 32, 4, 32000, 2048, false},
  };
  return shapes;
}

const ModelShape& find_shape(const std::string& flag, const std::string& name) {
  std::string names;
  for (const ModelShape& s : known_shapes()) {
    if (s.name == name) return s;
    names += (names.empty() ? "" : ", ") + s.name;
  }
  fail(flag, "unknown model shape '" + name + "' (known: " + names + ")");
}

DType find_format(const std::string& flag, const std::string& name) {
  for (DType t : {DType::F32, DType::F16, DType::Q8_0, DType::Q4_0}) {
    std::string lower = dtype_name(t);
    for (char& ch : lower) ch = char(std::tolower(static_cast<unsigned char>(ch)));
    if (name == dtype_name(t) || name == lower) return t;
  }
  fail(flag, "'" + name + "' is not one of f32, f16, q8_0, q4_0");
}

uint64_t write_synthetic_gguf(const std::string& path, const ModelShape& sh, DType type, uint64_t seed,
                              const Vocab* vocab) {
  uint32_t mat;
  switch (type) {
    case DType::F32: mat = kGgmlF32; break;
    case DType::F16: mat = kGgmlF16; break;
    case DType::Q8_0: mat = kGgmlQ8_0; break;
    case DType::Q4_0: mat = kGgmlQ4_0; break;
    default: fail(path, std::string("synthetic models cannot be ") + dtype_name(type));
  }
  const uint64_t dim = uint64_t(sh.dim), hidden = uint64_t(sh.hidden_dim);
  const uint64_t kv_dim = dim / uint64_t(sh.n_heads) * uint64_t(sh.n_kv_heads);
  std::vector<Tensor> ts;
  ts.push_back({"token_embd.weight", dim, uint64_t(sh.vocab_size), mat});
  for (int l = 0; l < sh.n_layers; l++) {
    const std::string b = "blk." + std::to_string(l) + ".";
    ts.push_back({b + "attn_norm.weight", dim, 1, kGgmlF32});
    ts.push_back({b + "attn_q.weight", dim, dim, mat});
    ts.push_back({b + "attn_k.weight", dim, kv_dim, mat});
    ts.push_back({b + "attn_v.weight", dim, kv_dim, mat});
    ts.push_back({b + "attn_output.weight", dim, dim, mat});
    ts.push_back({b + "ffn_norm.weight", dim, 1, kGgmlF32});
    ts.push_back({b + "ffn_gate.weight", dim, hidden, mat});
    ts.push_back({b + "ffn_down.weight", hidden, dim, mat});
    ts.push_back({b + "ffn_up.weight", dim, hidden, mat});
  }
  ts.push_back({"output_norm.weight", dim, 1, kGgmlF32});
  if (!sh.shared_classifier) ts.push_back({"output.weight", dim, uint64_t(sh.vocab_size), mat});
  uint64_t off = 0;
  for (Tensor& t : ts) {
    t.offset = off;
    t.bytes = tensor_bytes(t.ggml, t.ne0 * t.ne1);
    off += (t.bytes + kAlign - 1) / kAlign * kAlign;
  }

  Writer w(path);
  w.bytes("GGUF", 4);
  w.put<uint32_t>(3);
  w.put<uint64_t>(ts.size());
  const std::pair<const char*, int> ints[] = {
      {"llama.embedding_length", sh.dim},        {"llama.feed_forward_length", sh.hidden_dim},
      {"llama.block_count", sh.n_layers},        {"llama.attention.head_count", sh.n_heads},
      {"llama.attention.head_count_kv", sh.n_kv_heads}, {"llama.context_length", sh.seq_len},
  };
  w.put<uint64_t>(std::size(ints) + 2 + (vocab ? 4 : 0));
  w.str("general.architecture");
  w.put<uint32_t>(kTypeString);
  w.str("llama");
  if (vocab) {
    if (vocab->pieces.size() != size_t(sh.vocab_size) || vocab->scores.size() != vocab->pieces.size())
      fail(path, "the vocabulary has " + std::to_string(vocab->pieces.size()) + " tokens, the shape " +
                     std::to_string(sh.vocab_size));
    w.str("tokenizer.ggml.model");
    w.put<uint32_t>(kTypeString);
    w.str("llama");
    w.str("tokenizer.ggml.tokens");
    w.put<uint32_t>(kTypeArray);
    w.put<uint32_t>(kTypeString);
    w.put<uint64_t>(vocab->pieces.size());
    for (const std::string& piece : vocab->pieces) w.str(piece);
    w.str("tokenizer.ggml.scores");
    w.put<uint32_t>(kTypeArray);
    w.put<uint32_t>(kTypeF32);
    w.put<uint64_t>(vocab->scores.size());
    for (float f : vocab->scores) w.put<float>(f);
    // SentencePiece token types: 2 unknown (<unk>), 3 control (<s>, </s>), 6 byte (<0xNN>), 1 normal.
    w.str("tokenizer.ggml.token_type");
    w.put<uint32_t>(kTypeArray);
    w.put<uint32_t>(kTypeI32);
    w.put<uint64_t>(vocab->pieces.size());
    for (size_t i = 0; i < vocab->pieces.size(); i++) {
      const std::string& piece = vocab->pieces[i];
      const bool byte = piece.size() == 6 && piece.rfind("<0x", 0) == 0 && piece[5] == '>';
      w.put<int32_t>(i == 0 ? 2 : i <= 2 ? 3 : byte ? 6 : 1);
    }
  }
  for (const auto& [key, v] : ints) {
    w.str(key);
    w.put<uint32_t>(kTypeU32);
    w.put<uint32_t>(uint32_t(v));
  }
  w.str("llama.attention.layer_norm_rms_epsilon");
  w.put<uint32_t>(kTypeF32);
  w.put<float>(1e-5f);
  for (const Tensor& t : ts) {
    w.str(t.name);
    const bool vec = t.ne1 == 1;
    w.put<uint32_t>(vec ? 1 : 2);
    w.put<uint64_t>(t.ne0);
    if (!vec) w.put<uint64_t>(t.ne1);
    w.put<uint32_t>(t.ggml);
    w.put<uint64_t>(t.offset);
  }
  w.pad();
  for (const Tensor& t : ts) {
    const bool norm = t.ne1 == 1;
    write_tensor(w, t, seed, 1.0f / std::sqrt(float(t.ne0)), norm);
    w.pad();
  }
  const uint64_t size = w.size();
  w.close();
  return size;
}

Vocab read_llama2c_vocab(const std::string& path, int vocab_size) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) fail(path, "cannot open the tokenizer");
  Vocab v;
  int32_t max_len = 0;
  bool ok = std::fread(&max_len, 4, 1, f) == 1 && max_len > 0 && max_len < 4096;
  for (int i = 0; ok && i < vocab_size; i++) {
    float score;
    int32_t len;
    ok = std::fread(&score, 4, 1, f) == 1 && std::fread(&len, 4, 1, f) == 1 && len >= 0 && len <= max_len;
    std::string piece(size_t(ok ? len : 0), '\0');
    ok = ok && std::fread(piece.data(), 1, piece.size(), f) == piece.size();
    v.pieces.push_back(std::move(piece));
    v.scores.push_back(score);
  }
  std::fclose(f);
  if (!ok) fail(path, "is not a llama2.c tokenizer of " + std::to_string(vocab_size) + " tokens");
  return v;
}

uint64_t write_synthetic_llama2c(const std::string& path, const ModelShape& sh, int version, uint64_t seed) {
  if (version != 0 && version != 2) fail(path, "synthetic llama2.c checkpoints are version 0 or 2");
  const uint64_t dim = uint64_t(sh.dim), hidden = uint64_t(sh.hidden_dim), layers = uint64_t(sh.n_layers);
  const uint64_t kv_dim = dim / uint64_t(sh.n_heads) * uint64_t(sh.n_kv_heads), vocab = uint64_t(sh.vocab_size);
  const uint64_t head = dim / uint64_t(sh.n_heads);
  int group = 64;
  while (group > 1 && (dim % uint64_t(group) || hidden % uint64_t(group))) group /= 2;
  Writer w(path);
  const int32_t header[7] = {sh.dim, sh.hidden_dim, sh.n_layers, sh.n_heads, sh.n_kv_heads,
                             version == 0 && !sh.shared_classifier ? -sh.vocab_size : sh.vocab_size, sh.seq_len};
  if (version == 2) {
    w.put<uint32_t>(0x616b3432);  // "ak42"
    w.put<int32_t>(2);
    w.bytes(header, sizeof header);
    w.put<uint8_t>(sh.shared_classifier ? 1 : 0);
    w.put<int32_t>(group);
    static const char zeros[256] = {};
    w.bytes(zeros, 256 - size_t(w.size()));
  } else {
    w.bytes(header, sizeof header);
  }
  // F32 values uniform in +-amp (norms near 1), as the GGUF writer makes them.
  uint64_t s = seed;
  const auto floats = [&](uint64_t n, float amp, bool norm) {
    std::vector<float> buf;
    for (uint64_t done = 0; done < n; done += buf.size()) {
      buf.resize(size_t(std::min<uint64_t>(n - done, 1 << 20)));
      for (float& v : buf) {
        const float u = float(splitmix(s) >> 40) * (1.0f / 16777216.0f) * 2.0f - 1.0f;
        v = norm ? 1.0f + 0.1f * u : amp * u;
      }
      w.bytes(buf.data(), buf.size() * 4);
    }
  };
  // Q8_0 of runq.c: per layer, the int8 values of the layer's matrix, then its float scale per group.
  const auto quantized = [&](uint64_t n_layers, uint64_t n, float amp) {
    std::vector<int8_t> q;
    const std::vector<float> scales(size_t(n / uint64_t(group)), amp / 127.0f);
    for (uint64_t l = 0; l < n_layers; l++) {
      for (uint64_t done = 0; done < n; done += q.size()) {
        q.resize(size_t(std::min<uint64_t>(n - done, 1 << 20)));
        for (int8_t& v : q) v = int8_t(int(splitmix(s) % 255) - 127);
        w.bytes(q.data(), q.size());
      }
      w.bytes(scales.data(), scales.size() * 4);
    }
  };
  const float a_dim = 1.0f / std::sqrt(float(dim)), a_hidden = 1.0f / std::sqrt(float(hidden));
  const uint64_t mats[][2] = {{dim, dim}, {kv_dim, dim}, {kv_dim, dim}, {dim, dim},
                              {hidden, dim}, {dim, hidden}, {hidden, dim}};  // wq wk wv wo w1 w2 w3: rows, cols
  if (version == 0) {
    floats(vocab * dim, a_dim, false);
    floats(layers * dim, 0, true);  // rms_att
    for (int m = 0; m < 4; m++) floats(layers * mats[m][0] * mats[m][1], a_dim, false);
    floats(layers * dim, 0, true);  // rms_ffn
    for (int m = 4; m < 7; m++) floats(layers * mats[m][0] * mats[m][1], mats[m][1] == hidden ? a_hidden : a_dim, false);
    floats(dim, 0, true);                        // rms_final
    floats(uint64_t(sh.seq_len) * head, 1.0f, false);  // freq_cis_real and _imag (unused by run.c)
    if (!sh.shared_classifier) floats(vocab * dim, a_dim, false);
  } else {
    floats(layers * dim, 0, true);  // rms_att
    floats(layers * dim, 0, true);  // rms_ffn
    floats(dim, 0, true);           // rms_final
    quantized(1, vocab * dim, a_dim);
    for (const auto& m : mats) quantized(layers, m[0] * m[1], m[1] == hidden ? a_hidden : a_dim);
    if (!sh.shared_classifier) quantized(1, vocab * dim, a_dim);
  }
  const uint64_t size = w.size();
  w.close();
  return size;
}

}  // namespace bf::bench

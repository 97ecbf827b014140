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

enum : uint32_t { kTypeU32 = 4, kTypeF32 = 6, kTypeString = 8 };
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

uint64_t write_synthetic_gguf(const std::string& path, const ModelShape& sh, DType type, uint64_t seed) {
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
  w.put<uint64_t>(std::size(ints) + 2);
  w.str("general.architecture");
  w.put<uint32_t>(kTypeString);
  w.str("llama");
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

}  // namespace bf::bench

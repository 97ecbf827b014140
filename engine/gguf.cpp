// GGUF v1 (32-bit counts), v2 and v3 (64-bit counts), architecture "llama".
// Tensors are used in place inside the mapping; only F16 norm vectors are widened into Model::owned.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <optional>
#include <utility>
#include <variant>
#include <vector>

#include "engine/model.h"

namespace bf {
namespace {

enum GgufType : uint32_t {
  kU8 = 0, kI8, kU16, kI16, kU32, kI32, kF32, kBool, kString, kArray, kU64, kI64, kF64,
};
enum GgmlType : uint32_t { kGgmlF32 = 0, kGgmlF16 = 1, kGgmlQ4_0 = 2, kGgmlQ8_0 = 8 };

// Bounds on what a well-formed llama GGUF holds; beyond them the file is refused, not parsed.
constexpr uint64_t kMaxTensors = 1 << 16;
constexpr uint64_t kMaxKeys = 1 << 16;
constexpr uint64_t kMaxString = 1 << 24;
constexpr uint64_t kMaxArray = 1 << 24;
constexpr uint32_t kMaxDims = 4;

struct Reader {
  const std::string& path;
  const uint8_t* base;
  size_t size;
  size_t pos;
  bool wide;  // v2+: 64-bit counts and lengths

  const uint8_t* take(uint64_t n, const char* what) {
    if (pos > size || n > size - pos)
      fail(path, std::string("truncated GGUF: ") + what + " at offset " + std::to_string(pos) +
                     " runs past the end of the file (" + std::to_string(size) + " bytes)");
    const uint8_t* p = base + pos;
    pos += n;
    return p;
  }
  template <typename T>
  T get(const char* what) {
    T v;
    std::memcpy(&v, take(sizeof(T), what), sizeof(T));
    return v;
  }
  uint64_t count(const char* what) { return wide ? get<uint64_t>(what) : get<uint32_t>(what); }
  std::string_view string(const char* what) {
    const uint64_t n = count(what);
    if (n > kMaxString) fail(path, std::string(what) + " string length " + std::to_string(n) + " is absurd");
    const uint8_t* p = take(n, what);
    return {reinterpret_cast<const char*>(p), size_t(n)};
  }
};

size_t scalar_size(uint32_t type) {
  switch (type) {
    case kU8: case kI8: case kBool: return 1;
    case kU16: case kI16: return 2;
    case kU32: case kI32: case kF32: return 4;
    case kU64: case kI64: case kF64: return 8;
    default: return 0;
  }
}

// A metadata value: scalars are kept, arrays remember where their elements lie.
struct Value {
  uint32_t type = 0;
  std::variant<int64_t, uint64_t, double, std::string_view> scalar;
  uint32_t elem_type = 0;
  uint64_t count = 0;
  size_t elems_pos = 0;  // file offset of the first array element
};

Value read_value(Reader& r, uint32_t type, int depth) {
  Value v;
  v.type = type;
  switch (type) {
    case kU8: v.scalar = uint64_t(r.get<uint8_t>("u8")); break;
    case kI8: v.scalar = int64_t(r.get<int8_t>("i8")); break;
    case kU16: v.scalar = uint64_t(r.get<uint16_t>("u16")); break;
    case kI16: v.scalar = int64_t(r.get<int16_t>("i16")); break;
    case kU32: v.scalar = uint64_t(r.get<uint32_t>("u32")); break;
    case kI32: v.scalar = int64_t(r.get<int32_t>("i32")); break;
    case kU64: v.scalar = r.get<uint64_t>("u64"); break;
    case kI64: v.scalar = r.get<int64_t>("i64"); break;
    case kF32: v.scalar = double(r.get<float>("f32")); break;
    case kF64: v.scalar = r.get<double>("f64"); break;
    case kBool: v.scalar = uint64_t(r.get<uint8_t>("bool")); break;
    case kString: v.scalar = r.string("string value"); break;
    case kArray: {
      if (depth > 0) fail(r.path, "nested GGUF arrays are not supported");
      v.elem_type = r.get<uint32_t>("array type");
      v.count = r.count("array length");
      if (v.count > kMaxArray) fail(r.path, "GGUF array of " + std::to_string(v.count) + " elements is absurd");
      v.elems_pos = r.pos;
      if (const size_t es = scalar_size(v.elem_type)) {
        r.take(v.count * es, "array elements");
      } else if (v.elem_type == kString) {
        for (uint64_t i = 0; i < v.count; i++) r.string("array string");
      } else {
        fail(r.path, "unsupported GGUF array element type " + std::to_string(v.elem_type));
      }
      break;
    }
    default: fail(r.path, "unknown GGUF metadata value type " + std::to_string(type));
  }
  return v;
}

struct TensorInfo {
  std::string_view name;
  uint32_t n_dims = 0;
  uint64_t dims[kMaxDims] = {1, 1, 1, 1};
  uint32_t type = 0;
  uint64_t offset = 0;
};

struct Gguf {
  Model& model;
  std::map<std::string, Value, std::less<>> kv;
  std::map<std::string, TensorInfo, std::less<>> tensors;
  const uint8_t* data = nullptr;  // start of the tensor data section
  uint64_t data_size = 0;

  const std::string& path() const { return model.path; }

  std::optional<int64_t> integer(std::string_view key) const {
    auto it = kv.find(key);
    if (it == kv.end()) return std::nullopt;
    const Value& v = it->second;
    if (auto* i = std::get_if<int64_t>(&v.scalar); i && v.type != kArray) return *i;
    if (auto* u = std::get_if<uint64_t>(&v.scalar); u && v.type != kArray && v.type != kBool) {
      if (*u > uint64_t(INT64_MAX)) fail(path(), std::string(key) + " is out of range");
      return int64_t(*u);
    }
    fail(path(), "metadata " + std::string(key) + " is not an integer");
  }
  int required_int(std::string_view key) const {
    const auto v = integer(key);
    if (!v) fail(path(), "missing metadata " + std::string(key));
    if (*v < INT32_MIN || *v > INT32_MAX)
      fail(path(), "metadata " + std::string(key) + " = " + std::to_string(*v) + " is out of range");
    return int(*v);
  }
  std::optional<double> real(std::string_view key) const {
    auto it = kv.find(key);
    if (it == kv.end()) return std::nullopt;
    if (auto* d = std::get_if<double>(&it->second.scalar)) return *d;
    fail(path(), "metadata " + std::string(key) + " is not a float");
  }
  std::optional<std::string_view> string(std::string_view key) const {
    auto it = kv.find(key);
    if (it == kv.end()) return std::nullopt;
    if (auto* s = std::get_if<std::string_view>(&it->second.scalar); s && it->second.type == kString)
      return *s;
    fail(path(), "metadata " + std::string(key) + " is not a string");
  }

  uint64_t tensor_bytes(const TensorInfo& t) const {
    const uint64_t n = t.dims[0] * t.dims[1] * t.dims[2] * t.dims[3];  // dims are bounded
    switch (t.type) {
      case kGgmlF32: return n * 4;
      case kGgmlF16: return n * 2;
      case kGgmlQ8_0:
      case kGgmlQ4_0:
        if (n % kBlock != 0)
          fail(path(), "tensor " + std::string(t.name) + " has " + std::to_string(n) +
                           " elements, not a whole number of 32-element blocks");
        return n / kBlock * (t.type == kGgmlQ8_0 ? sizeof(BlockQ8_0) : sizeof(BlockQ4_0));
      default:
        fail(path(), "tensor " + std::string(t.name) + " has unsupported type " +
                         std::to_string(t.type) + " (supported: F32, F16, Q8_0, Q4_0)");
    }
  }

  const TensorInfo& find(const std::string& name) const {
    auto it = tensors.find(name);
    if (it == tensors.end()) fail(path(), "missing tensor " + name);
    return it->second;
  }

  void check_shape(const TensorInfo& t, uint64_t ne0, uint64_t ne1) const {
    if (t.dims[0] != ne0 || t.dims[1] != ne1 || t.dims[2] != 1 || t.dims[3] != 1)
      fail(path(), "tensor " + std::string(t.name) + " has shape [" + std::to_string(t.dims[0]) + ", " +
                       std::to_string(t.dims[1]) + "], expected [" + std::to_string(ne0) + ", " +
                       std::to_string(ne1) + "]");
  }

  const void* tensor_data(const TensorInfo& t) const {
    const uint64_t bytes = tensor_bytes(t);
    if (t.offset > data_size || bytes > data_size - t.offset)
      fail(path(), "tensor " + std::string(t.name) + " data (offset " + std::to_string(t.offset) + ", " +
                       std::to_string(bytes) + " bytes) lies past the end of the file");
    return data + t.offset;
  }

  // GGUF matrices are [ne0 = cols (inner), ne1 = rows].
  Matrix matrix(const std::string& name, int64_t rows, int64_t cols) const {
    const TensorInfo& t = find(name);
    check_shape(t, uint64_t(cols), uint64_t(rows));
    Matrix m;
    m.rows = rows;
    m.cols = cols;
    m.data = tensor_data(t);
    switch (t.type) {
      case kGgmlF32: m.type = DType::F32; break;
      case kGgmlF16: m.type = DType::F16; break;
      case kGgmlQ8_0: m.type = DType::Q8_0; break;
      case kGgmlQ4_0: m.type = DType::Q4_0; break;
    }
    return m;
  }

  // A norm vector: F32 is used in place; F16 is widened into Model::owned by widen_norms().
  const TensorInfo& vector(const std::string& name, int64_t n) const {
    const TensorInfo& t = find(name);
    check_shape(t, uint64_t(n), 1);
    (void)tensor_data(t);
    if (t.type != kGgmlF32 && t.type != kGgmlF16) fail(path(), "tensor " + name + " must be F32 or F16");
    return t;
  }
};

// Norm vectors, given as (tensor, where its f32 pointer goes). Called once every tensor has been
// checked against the file, so the widened copies are bounded by what the file declares.
void widen_norms(Gguf& g, const std::vector<std::pair<const TensorInfo*, const float**>>& norms) {
  size_t f16 = 0;
  for (const auto& [t, dst] : norms)
    if (t->type == kGgmlF16) f16 += size_t(t->dims[0]);
  std::vector<float>& owned = g.model.owned;
  owned.reserve(f16);  // never reallocated below: the pointers stay valid
  for (const auto& [t, dst] : norms) {
    const void* p = g.tensor_data(*t);
    if (t->type == kGgmlF32) {
      *dst = static_cast<const float*>(p);
      continue;
    }
    const size_t at = owned.size();
    for (uint64_t i = 0; i < t->dims[0]; i++) owned.push_back(fp16_to_f32(static_cast<const uint16_t*>(p)[i]));
    *dst = owned.data() + at;
  }
}

void read_vocab(Gguf& g, Reader& r) {
  const auto tok_it = g.kv.find("tokenizer.ggml.tokens");
  if (tok_it == g.kv.end()) return;  // no embedded tokenizer: -z is then required
  const Value& tokens = tok_it->second;
  if (tokens.type != kArray || tokens.elem_type != kString)
    fail(g.path(), "tokenizer.ggml.tokens is not an array of strings");
  // Checked before anything is built: the vocabulary is as large as the embedding, no larger.
  const uint64_t vocab_size = uint64_t(g.model.config.vocab_size);
  if (tokens.count != vocab_size)
    fail(g.path(), "embedded tokenizer has " + std::to_string(tokens.count) +
                       " tokens but token_embd.weight has " + std::to_string(vocab_size));
  if (auto m = g.string("tokenizer.ggml.model"); m && *m != "llama")
    fail(g.path(), "unsupported tokenizer model '" + std::string(*m) + "' (supported: llama)");
  auto vocab = std::make_unique<EmbeddedVocab>();
  // Every special id indexes the vocabulary; a default (absent key) is checked as well.
  const auto id = [&](const char* key, int fallback) {
    const auto v = g.integer(key);
    const int64_t value = v ? *v : fallback;
    if (value < 0 || uint64_t(value) >= tokens.count)
      fail(g.path(), std::string(key) + (v ? " = " : " is missing and its default ") + std::to_string(value) +
                         " is not a token id of the " + std::to_string(tokens.count) + "-token vocabulary");
    return int(value);
  };
  vocab->bos = id("tokenizer.ggml.bos_token_id", 1);
  vocab->eos = id("tokenizer.ggml.eos_token_id", 2);
  if (auto t = g.string("tokenizer.chat_template")) vocab->chat_template = std::string(*t);
  const Value* scores = nullptr;
  if (auto it = g.kv.find("tokenizer.ggml.scores"); it != g.kv.end()) {
    scores = &it->second;
    if (scores->type != kArray || scores->elem_type != kF32 || scores->count != tokens.count)
      fail(g.path(), "tokenizer.ggml.scores must be " + std::to_string(tokens.count) + " f32 values");
  }
  vocab->pieces.reserve(tokens.count);
  r.pos = tokens.elems_pos;
  for (uint64_t i = 0; i < tokens.count; i++) {
    std::string piece(r.string("token"));
    // SentencePiece marks a space with U+2581 (E2 96 81); llama2.c's tokenizer.bin uses ' '.
    for (size_t at; (at = piece.find("\xE2\x96\x81")) != std::string::npos;) piece.replace(at, 3, " ");
    vocab->pieces.push_back(std::move(piece));
  }
  vocab->scores.assign(tokens.count, 0.0f);
  if (scores) std::memcpy(vocab->scores.data(), r.base + scores->elems_pos, scores->count * 4);
  g.model.vocab = std::move(vocab);
}

// The header up to the metadata: version, tensor and key counts.
void read_header(Reader& r, Model& model, uint64_t& n_tensors, uint64_t& n_kv) {
  const uint32_t version = r.get<uint32_t>("version");
  if (version == 0x01000000 || version == 0x02000000 || version == 0x03000000)
    fail(model.path, "big-endian GGUF is not supported");
  if (version < 1 || version > 3)
    fail(model.path, "unsupported GGUF version " + std::to_string(version) + " (supported: 1, 2, 3)");
  model.format = ModelFormat::Gguf;
  model.format_version = int(version);
  r.wide = version >= 2;
  n_tensors = r.count("tensor count");
  n_kv = r.count("metadata count");
  if (n_tensors > kMaxTensors) fail(model.path, "tensor count " + std::to_string(n_tensors) + " is absurd");
  if (n_kv > kMaxKeys) fail(model.path, "metadata count " + std::to_string(n_kv) + " is absurd");
}

void read_tensor_infos(Reader& r, Gguf& g, uint64_t n_tensors) {
  for (uint64_t i = 0; i < n_tensors; i++) {
    TensorInfo t;
    t.name = r.string("tensor name");
    t.n_dims = r.get<uint32_t>("tensor dimension count");
    if (t.n_dims < 1 || t.n_dims > kMaxDims)
      fail(g.path(), "tensor " + std::string(t.name) + " has " + std::to_string(t.n_dims) + " dimensions");
    for (uint32_t d = 0; d < t.n_dims; d++) {
      t.dims[d] = r.count("tensor dimension");
      if (t.dims[d] == 0 || t.dims[d] > (1u << 24))
        fail(g.path(), "tensor " + std::string(t.name) + " has dimension " + std::to_string(t.dims[d]));
    }
    if (t.dims[0] * t.dims[1] * t.dims[2] * t.dims[3] > (1ull << 40))
      fail(g.path(), "tensor " + std::string(t.name) + " is absurdly large");
    t.type = r.get<uint32_t>("tensor type");
    t.offset = r.get<uint64_t>("tensor offset");
    if (!g.tensors.emplace(std::string(t.name), t).second)
      fail(g.path(), "duplicate tensor " + std::string(t.name));
  }
}

// The tensor data section starts at the next multiple of general.alignment.
void locate_data(const Reader& r, Gguf& g) {
  uint64_t alignment = 32;
  if (auto a = g.integer("general.alignment")) {
    if (*a < 8 || *a > 65536 || (*a & (*a - 1)) != 0)
      fail(g.path(), "general.alignment " + std::to_string(*a) + " is not a power of two >= 8");
    alignment = uint64_t(*a);
  }
  const uint64_t data_start = (r.pos + alignment - 1) / alignment * alignment;
  if (data_start > r.size) fail(g.path(), "truncated GGUF: no tensor data section");
  g.data = r.base + data_start;
  g.data_size = r.size - data_start;
  for (const auto& [name, t] : g.tensors)
    if (t.offset % alignment != 0)
      fail(g.path(), "tensor " + name + " offset " + std::to_string(t.offset) + " is not aligned to " +
                         std::to_string(alignment));
}

// Config from the llama.* keys; the vocabulary size is the embedding's row count.
void read_config(Gguf& g) {
  Model& model = g.model;
  const auto arch = g.string("general.architecture");
  if (!arch) fail(model.path, "missing metadata general.architecture");
  if (*arch != "llama")
    fail(model.path, "unsupported architecture '" + std::string(*arch) + "' (supported: llama)");

  Config& c = model.config;
  c.dim = g.required_int("llama.embedding_length");
  c.hidden_dim = g.required_int("llama.feed_forward_length");
  c.n_layers = g.required_int("llama.block_count");
  c.n_heads = g.required_int("llama.attention.head_count");
  c.n_kv_heads = g.integer("llama.attention.head_count_kv") ? g.required_int("llama.attention.head_count_kv")
                                                            : c.n_heads;
  c.seq_len = g.required_int("llama.context_length");
  if (auto e = g.real("llama.attention.layer_norm_rms_epsilon")) c.norm_eps = float(*e);
  if (auto b = g.real("llama.rope.freq_base")) c.rope_theta = float(*b);
  const TensorInfo& emb = g.find("token_embd.weight");
  if (emb.dims[1] > uint64_t(INT32_MAX)) fail(model.path, "token_embd.weight vocabulary is absurd");
  c.vocab_size = int(emb.dims[1]);

  // q/k row order decides which pairs RoPE rotates. llama2.c and Meta checkpoints ("Meta AI
  // original pth"), and llama.cpp's converter (which undoes Hugging Face's permutation) all use
  // adjacent pairs. Weights still in Hugging Face's permuted order rotate (i, i + head_size/2).
  if (auto layout = g.string("llama.tensor_data_layout")) {
    model.format_detail = "tensor data layout: " + std::string(*layout);
    if (*layout == "Meta AI original pth") {
      c.rope_style = RopeStyle::Interleaved;
    } else if (*layout == "Hugging Face" || *layout == "huggingface" || *layout == "hf") {
      c.rope_style = RopeStyle::HalfSplit;
    } else {
      fail(model.path, "unsupported llama.tensor_data_layout '" + std::string(*layout) + "'");
    }
  }
  validate_config(model.path, c);
  if (auto rd = g.integer("llama.rope.dimension_count"); rd && *rd != c.head_size())
    fail(model.path, "partial RoPE (rope.dimension_count " + std::to_string(*rd) + " != head size " +
                         std::to_string(c.head_size()) + ") is not supported");
}

// Every weight as a view into the mapping, each checked for shape, type and extent first.
void map_weights(Gguf& g) {
  const Config& c = g.model.config;
  const int64_t dim = c.dim, hidden = c.hidden_dim, kv_dim = c.kv_dim(), vocab = c.vocab_size;
  Weights& w = g.model.weights;
  std::vector<std::pair<const TensorInfo*, const float**>> norms;
  w.token_embedding = g.matrix("token_embd.weight", vocab, dim);
  w.layers.assign(size_t(c.n_layers), LayerWeights{});
  for (int l = 0; l < c.n_layers; l++) {
    const std::string b = "blk." + std::to_string(l) + ".";
    LayerWeights& lw = w.layers[l];
    norms.emplace_back(&g.vector(b + "attn_norm.weight", dim), &lw.rms_att);
    lw.wq = g.matrix(b + "attn_q.weight", dim, dim);
    lw.wk = g.matrix(b + "attn_k.weight", kv_dim, dim);
    lw.wv = g.matrix(b + "attn_v.weight", kv_dim, dim);
    lw.wo = g.matrix(b + "attn_output.weight", dim, dim);
    norms.emplace_back(&g.vector(b + "ffn_norm.weight", dim), &lw.rms_ffn);
    lw.w1 = g.matrix(b + "ffn_gate.weight", hidden, dim);
    lw.w2 = g.matrix(b + "ffn_down.weight", dim, hidden);
    lw.w3 = g.matrix(b + "ffn_up.weight", hidden, dim);
  }
  norms.emplace_back(&g.vector("output_norm.weight", dim), &w.rms_final);
  w.classifier = g.tensors.count("output.weight") ? g.matrix("output.weight", vocab, dim) : w.token_embedding;
  widen_norms(g, norms);
}

}  // namespace

void load_gguf(Model& model) {
  Reader r{model.path, model.file.data(), model.file.size(), 4, false};
  uint64_t n_tensors = 0, n_kv = 0;
  read_header(r, model, n_tensors, n_kv);
  Gguf g{model, {}, {}};
  for (uint64_t i = 0; i < n_kv; i++) {
    const std::string_view key = r.string("metadata key");
    const uint32_t type = r.get<uint32_t>("metadata type");
    g.kv.insert_or_assign(std::string(key), read_value(r, type, 0));
  }
  read_tensor_infos(r, g, n_tensors);
  locate_data(r, g);
  read_config(g);
  map_weights(g);
  read_vocab(g, r);
}

}  // namespace bf

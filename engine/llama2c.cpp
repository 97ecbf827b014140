// llama2.c checkpoints: v0 (legacy run.c format), v1 ("ak42" fp32), v2 ("ak42" Q8_0 groups, runq.c).
#include <cstring>

#include "engine/model.h"

namespace bf {
namespace {

constexpr uint32_t kMagicAk42 = 0x616b3432;  // "ak42" read as little-endian uint32
constexpr size_t kAk42HeaderBytes = 256;

// Hands out consecutive pieces of the file, refusing to run past its end.
struct Cursor {
  const Model& model;
  size_t pos;

  const uint8_t* take(uint64_t bytes, const char* what) {
    const size_t size = model.file.size();
    if (pos > size || bytes > size - pos)
      fail(model.path, std::string("truncated: ") + what + " needs " + std::to_string(bytes) +
                           " bytes at offset " + std::to_string(pos) + ", file has " +
                           std::to_string(size));
    const uint8_t* p = model.file.data() + pos;
    pos += bytes;
    return p;
  }
  const float* floats(uint64_t n, const char* what) {
    return reinterpret_cast<const float*>(take(n * 4, what));
  }
  Matrix f32(int64_t rows, int64_t cols, const char* what) {
    Matrix m;
    m.type = DType::F32;
    m.rows = rows;
    m.cols = cols;
    m.data = floats(uint64_t(rows) * uint64_t(cols), what);
    return m;
  }
  // runq.c layout: int8 values, then one f32 scale per group, for this one tensor.
  Matrix q8(int64_t rows, int64_t cols, int group, const char* what) {
    const uint64_t n = uint64_t(rows) * uint64_t(cols);
    if (n % uint64_t(group) != 0)
      fail(model.path, std::string(what) + " has " + std::to_string(n) +
                           " elements, not a multiple of the group size " + std::to_string(group));
    Matrix m;
    m.type = DType::Q8_G;
    m.rows = rows;
    m.cols = cols;
    m.group = group;
    m.data = take(n, what);
    if (pos % 4 != 0) fail(model.path, std::string(what) + ": scales are not 4-byte aligned");
    m.scales = floats(n / uint64_t(group), what);
    return m;
  }
};

int32_t read_i32(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// The seven int32 fields both headers hold, in run.c's Config order (v0 at 0, ak42 at 8).
void read_config(const uint8_t* p, Config& c) {
  int* const fields[] = {&c.dim, &c.hidden_dim, &c.n_layers, &c.n_heads, &c.n_kv_heads, &c.vocab_size, &c.seq_len};
  for (int* f : fields) *f = read_i32(p), p += 4;
}

// The header: format, version, config; returns the header size. `shared_classifier` and `group`
// (v2's quantization group, 0 for fp32) come from it too.
size_t read_header(Model& model, bool& shared_classifier, int& group) {
  const uint8_t* p = model.file.data();
  const size_t size = model.file.size();
  Config& c = model.config;
  uint32_t magic = 0;
  if (size >= 4) std::memcpy(&magic, p, 4);
  if (magic == kMagicAk42) {
    if (size < kAk42HeaderBytes) fail(model.path, "truncated: ak42 header needs 256 bytes");
    const int32_t version = read_i32(p + 4);
    if (version != 1 && version != 2)
      fail(model.path, "unsupported llama2.c checkpoint version " + std::to_string(version) +
                           " (supported: 1 fp32, 2 Q8_0)");
    model.format = version == 1 ? ModelFormat::Llama2cV1 : ModelFormat::Llama2cV2;
    model.format_version = version;
    read_config(p + 8, c);
    const uint8_t shared = p[36];
    if (shared > 1) fail(model.path, "shared_classifier flag is " + std::to_string(shared) + ", not 0 or 1");
    shared_classifier = shared == 1;
    if (version == 2) {
      group = read_i32(p + 37);
      if (group <= 0 || group > (1 << 16))
        fail(model.path, "group size " + std::to_string(group) + " is out of range");
      model.format_detail = "group size " + std::to_string(group);
    }
    validate_config(model.path, c);
    return kAk42HeaderBytes;
  }
  if (size < 28)
    fail(model.path, "unrecognized model file: too short for any supported format (" +
                         std::to_string(size) + " bytes)");
  model.format = ModelFormat::Llama2cV0;
  read_config(p, c);
  // run.c's convention: a negative vocab size means the classifier is stored separately.
  shared_classifier = c.vocab_size > 0;
  if (c.vocab_size < 0 && c.vocab_size != INT32_MIN) c.vocab_size = -c.vocab_size;
  // A v0 file has no magic: any bytes parse as a header, so say what was assumed.
  try {
    validate_config(model.path, c);
  } catch (const Error& e) {
    const std::string why = e.message.substr(model.path.size() + 2);
    fail(model.path, "unrecognized model file (no GGUF or ak42 magic; as a llama2.c v0 header: " + why + ")");
  }
  return 28;
}

// run.c's v0 order: each kind of tensor for every layer in turn, fp32, then unused RoPE tables.
void map_v0(Model& model, Cursor& cur, bool shared_classifier) {
  const Config& c = model.config;
  const int64_t dim = c.dim, hidden = c.hidden_dim, kv_dim = c.kv_dim(), vocab = c.vocab_size;
  const int L = c.n_layers;
  Weights& w = model.weights;
  w.token_embedding = cur.f32(vocab, dim, "token_embedding_table");
  const float* rms_att = cur.floats(uint64_t(L) * dim, "rms_att_weight");
  for (int l = 0; l < L; l++) w.layers[l].rms_att = rms_att + l * dim;
  for (int l = 0; l < L; l++) w.layers[l].wq = cur.f32(dim, dim, "wq");
  for (int l = 0; l < L; l++) w.layers[l].wk = cur.f32(kv_dim, dim, "wk");
  for (int l = 0; l < L; l++) w.layers[l].wv = cur.f32(kv_dim, dim, "wv");
  for (int l = 0; l < L; l++) w.layers[l].wo = cur.f32(dim, dim, "wo");
  const float* rms_ffn = cur.floats(uint64_t(L) * dim, "rms_ffn_weight");
  for (int l = 0; l < L; l++) w.layers[l].rms_ffn = rms_ffn + l * dim;
  for (int l = 0; l < L; l++) w.layers[l].w1 = cur.f32(hidden, dim, "w1");
  for (int l = 0; l < L; l++) w.layers[l].w2 = cur.f32(dim, hidden, "w2");
  for (int l = 0; l < L; l++) w.layers[l].w3 = cur.f32(hidden, dim, "w3");
  w.rms_final = cur.floats(uint64_t(dim), "rms_final_weight");
  // Precomputed RoPE tables (freq_cis_real, freq_cis_imag) that run.c skips.
  cur.floats(uint64_t(c.seq_len) * uint64_t(c.head_size()), "freq_cis tables");
  w.classifier = shared_classifier ? w.token_embedding : cur.f32(vocab, dim, "wcls");
}

// v1 and v2 share the order: norms first (fp32), then the matrices (fp32, or runq.c's Q8 groups).
void map_ak42(Model& model, Cursor& cur, bool shared_classifier, int group) {
  const Config& c = model.config;
  const int64_t dim = c.dim, hidden = c.hidden_dim, kv_dim = c.kv_dim(), vocab = c.vocab_size;
  const int L = c.n_layers;
  Weights& w = model.weights;
  const float* rms_att = cur.floats(uint64_t(L) * dim, "rms_att_weight");
  const float* rms_ffn = cur.floats(uint64_t(L) * dim, "rms_ffn_weight");
  w.rms_final = cur.floats(uint64_t(dim), "rms_final_weight");
  for (int l = 0; l < L; l++) {
    w.layers[l].rms_att = rms_att + l * dim;
    w.layers[l].rms_ffn = rms_ffn + l * dim;
  }
  auto matrix = [&](int64_t rows, int64_t cols, const char* what) {
    return group ? cur.q8(rows, cols, group, what) : cur.f32(rows, cols, what);
  };
  w.token_embedding = matrix(vocab, dim, "token_embedding_table");
  for (int l = 0; l < L; l++) w.layers[l].wq = matrix(dim, dim, "wq");
  for (int l = 0; l < L; l++) w.layers[l].wk = matrix(kv_dim, dim, "wk");
  for (int l = 0; l < L; l++) w.layers[l].wv = matrix(kv_dim, dim, "wv");
  for (int l = 0; l < L; l++) w.layers[l].wo = matrix(dim, dim, "wo");
  for (int l = 0; l < L; l++) w.layers[l].w1 = matrix(hidden, dim, "w1");
  for (int l = 0; l < L; l++) w.layers[l].w2 = matrix(dim, hidden, "w2");
  for (int l = 0; l < L; l++) w.layers[l].w3 = matrix(hidden, dim, "w3");
  w.classifier = shared_classifier ? w.token_embedding : matrix(vocab, dim, "wcls");
}

}  // namespace

void load_llama2c(Model& model) {
  bool shared_classifier = true;
  int group = 0;
  const size_t header = read_header(model, shared_classifier, group);
  model.weights.layers.assign(size_t(model.config.n_layers), LayerWeights{});
  Cursor cur{model, header};
  if (model.format == ModelFormat::Llama2cV0) {
    map_v0(model, cur, shared_classifier);
  } else {
    map_ak42(model, cur, shared_classifier, group);
  }
}

}  // namespace bf

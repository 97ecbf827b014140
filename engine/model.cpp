#include "engine/model.h"

#include <sys/resource.h>

#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "engine/fnv1a.h"

namespace bf {

const char* format_name(ModelFormat f) {
  switch (f) {
    case ModelFormat::Llama2cV0: return "llama2.c v0 (legacy, fp32)";
    case ModelFormat::Llama2cV1: return "llama2.c v1 (ak42, fp32)";
    case ModelFormat::Llama2cV2: return "llama2.c v2 (ak42, Q8_0 groups)";
    case ModelFormat::Gguf: return "GGUF";
  }
  return "?";
}

void validate_config(const std::string& path, const Config& c) {
  // Bounds far above any llama-family model, low enough that sizes computed from them never
  // overflow 64-bit arithmetic.
  struct Field {
    const char* name;
    int value;
    int max;
  };
  const Field fields[] = {
      {"dim", c.dim, 1 << 16},          {"hidden_dim", c.hidden_dim, 1 << 18},
      {"n_layers", c.n_layers, 1024},   {"n_heads", c.n_heads, 1024},
      {"n_kv_heads", c.n_kv_heads, 1024}, {"vocab_size", c.vocab_size, 1 << 22},
      {"seq_len", c.seq_len, 1 << 20},
  };
  for (const Field& f : fields) {
    if (f.value <= 0) fail(path, std::string(f.name) + " must be positive, got " + std::to_string(f.value));
    if (f.value > f.max)
      fail(path, std::string(f.name) + " " + std::to_string(f.value) + " exceeds the limit " +
                     std::to_string(f.max));
  }
  if (c.dim % c.n_heads != 0)
    fail(path, "dim " + std::to_string(c.dim) + " is not divisible by n_heads " + std::to_string(c.n_heads));
  if (c.n_heads % c.n_kv_heads != 0)
    fail(path, "n_heads " + std::to_string(c.n_heads) + " is not divisible by n_kv_heads " +
                   std::to_string(c.n_kv_heads));
  if (c.head_size() % 2 != 0)
    fail(path, "head size " + std::to_string(c.head_size()) + " is odd; RoPE needs pairs");
  // The KV cache is 2 * n_layers * seq_len * kv_dim floats; refuse what no machine could hold.
  const uint64_t kv_bytes = 8ull * uint64_t(c.n_layers) * uint64_t(c.seq_len) * uint64_t(c.kv_dim());
  if (kv_bytes > (1ull << 38))
    fail(path, "KV cache for seq_len " + std::to_string(c.seq_len) + " would need " +
                   std::to_string(kv_bytes >> 30) + " GiB");
  if (!(c.norm_eps > 0.0f && c.norm_eps < 1.0f))
    fail(path, "RMS norm epsilon " + std::to_string(c.norm_eps) + " is out of range");
  if (!(c.rope_theta > 1.0f && c.rope_theta < 1e12f))
    fail(path, "RoPE base " + std::to_string(c.rope_theta) + " is out of range");
}

uint64_t kv_cache_bytes(const Config& c, int positions, int slots) {
  return 2ull * 4ull * uint64_t(slots) * uint64_t(c.n_layers) * uint64_t(positions) * uint64_t(c.kv_dim());
}

namespace {

std::string gib(uint64_t bytes) {
  char s[32];
  std::snprintf(s, sizeof s, "%.1f GiB", double(bytes) / double(1ull << 30));
  return s;
}

// What this process may allocate at most: the smallest of the machine's RAM (when /proc/meminfo
// can be read: not inside the unikernel) and the address-space and data limits.
uint64_t memory_limit(std::string* what) {
  uint64_t limit = UINT64_MAX;
  if (FILE* f = std::fopen("/proc/meminfo", "r")) {
    unsigned long long kib = 0;
    if (std::fscanf(f, "MemTotal: %llu kB", &kib) == 1 && kib > 0) {
      limit = uint64_t(kib) * 1024;
      *what = "this machine's " + gib(limit) + " of memory";
    }
    std::fclose(f);
  }
  for (const auto& [resource, name] : {std::pair{RLIMIT_AS, "address-space"}, std::pair{RLIMIT_DATA, "data"}}) {
    struct rlimit rl;
    if (getrlimit(resource, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && uint64_t(rl.rlim_cur) < limit) {
      limit = uint64_t(rl.rlim_cur);
      *what = "the " + gib(limit) + " " + name + " limit (ulimit)";
    }
  }
  return limit;
}

}  // namespace

[[noreturn]] void fail_kv_cache(const Model& m, int positions, const std::string& why, int slots) {
  fail(m.path, (slots > 1 ? std::to_string(slots) + " slots (--parallel) of " : std::string()) +
                   std::to_string(positions) + " positions (-n; 0 = the context length of " +
                   std::to_string(m.config.seq_len) + ") need " + gib(kv_cache_bytes(m.config, positions, slots)) +
                   " of KV cache: " + why);
}

void check_kv_cache_fits(const Model& m, int positions, int slots) {
  std::string what;
  const uint64_t limit = memory_limit(&what);
  if (kv_cache_bytes(m.config, positions, slots) > limit) fail_kv_cache(m, positions, "more than " + what, slots);
}

uint64_t Model::parameter_count() const {
  const Config& c = config;
  uint64_t n = uint64_t(c.vocab_size) * c.dim + c.dim;  // embedding, final norm
  for (const LayerWeights& l : weights.layers) {
    n += 2ull * c.dim;
    for (const Matrix* m : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w1, &l.w2, &l.w3})
      n += uint64_t(m->rows) * uint64_t(m->cols);
  }
  if (weights.classifier.data != weights.token_embedding.data)
    n += uint64_t(weights.classifier.rows) * uint64_t(weights.classifier.cols);
  return n;
}

uint64_t Model::bytes_per_token() const {
  const Config& c = config;
  const Matrix& e = weights.token_embedding;
  uint64_t n = matrix_bytes(e) / uint64_t(e.rows);  // one embedding row
  n += uint64_t(c.dim) * 4;                         // final norm
  for (const LayerWeights& l : weights.layers) {
    n += 2ull * c.dim * 4;
    for (const Matrix* m : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w1, &l.w2, &l.w3}) n += matrix_bytes(*m);
  }
  return n + matrix_bytes(weights.classifier);
}

std::unique_ptr<Model> load_model(const std::string& name, MappedFile file) {
  auto model = std::make_unique<Model>();
  model->path = name;
  model->file = std::move(file);
  const uint8_t* p = model->file.data();
  const size_t size = model->file.size();
  const bool gguf = size >= 4 && std::memcmp(p, "GGUF", 4) == 0;
  // The appliance templates are built with one format's loader (BF_ONLY_FORMAT: 1 llama2.c,
  // 2 GGUF); the other is never referenced, and the link drops it.
#if defined(BF_ONLY_FORMAT) && BF_ONLY_FORMAT == 1
  if (gguf) fail(name, "is a GGUF file; this executable reads only llama2.c model files");
  load_llama2c(*model);
#elif defined(BF_ONLY_FORMAT) && BF_ONLY_FORMAT == 2
  if (!gguf) fail(name, "is not a GGUF file; this executable reads only GGUF model files");
  load_gguf(*model);
#else
  if (gguf) load_gguf(*model);
  else load_llama2c(*model);
#endif
  return model;
}

std::unique_ptr<Model> load_model(const std::string& path) {
  return load_model(path, MappedFile::open(path));
}

ModelIdentity model_identity(const Model& m) {
  const Config& c = m.config;
  std::string d = std::string(format_name(m.format)) + " v" + std::to_string(m.format_version) + " " + m.format_detail;
  char buf[256];
  std::snprintf(buf, sizeof buf, " dim=%d hidden=%d layers=%d heads=%d kv_heads=%d vocab=%d seq=%d eps=%a theta=%a rope=%d",
                c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size, c.seq_len, double(c.norm_eps),
                double(c.rope_theta), int(c.rope_style));
  d += buf;
  auto matrix = [&](const char* name, const Matrix& w) {
    // The types as laid out in memory (Q8_0x8 once repacked): what compiled code is made for.
    std::snprintf(buf, sizeof buf, " %s=%s/%d/%" PRId64 "x%" PRId64, name, dtype_name(w.type), int(w.group), w.rows,
                  w.cols);
    d += buf;
  };
  matrix("embed", m.weights.token_embedding);
  matrix("classifier", m.weights.classifier);
  for (const LayerWeights& l : m.weights.layers) {
    matrix("wq", l.wq), matrix("wk", l.wk), matrix("wv", l.wv), matrix("wo", l.wo);
    matrix("w1", l.w1), matrix("w2", l.w2), matrix("w3", l.w3);
  }
  std::snprintf(buf, sizeof buf, "%016" PRIx64, fnv1a(d));
  return {buf, d};
}

}  // namespace bf

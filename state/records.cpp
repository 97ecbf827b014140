#include "state/records.h"

#include <sys/stat.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "engine/error.h"

namespace bf::state {

namespace {

constexpr uint32_t kModelStateVersion = 1;
constexpr uint32_t kRunVersion = 1;

class Writer {
 public:
  void u8(uint8_t v) { out_.push_back(v); }
  void u32(uint32_t v) { raw(&v, sizeof v); }
  void u64(uint64_t v) { raw(&v, sizeof v); }
  void f64(double v) { raw(&v, sizeof v); }
  void str(const std::string& s) {
    u32(uint32_t(s.size()));
    raw(s.data(), s.size());
  }
  std::vector<uint8_t> take() { return std::move(out_); }

 private:
  void raw(const void* p, size_t n) {
    const uint8_t* b = static_cast<const uint8_t*>(p);
    out_.insert(out_.end(), b, b + n);
  }
  std::vector<uint8_t> out_;
};

class Reader {
 public:
  Reader(const std::vector<uint8_t>& v, const std::string& where) : v_(v), where_(where) {}
  uint8_t u8() {
    uint8_t v;
    raw(&v, 1);
    return v;
  }
  uint32_t u32() {
    uint32_t v;
    raw(&v, sizeof v);
    return v;
  }
  uint64_t u64() {
    uint64_t v;
    raw(&v, sizeof v);
    return v;
  }
  double f64() {
    double v;
    raw(&v, sizeof v);
    return v;
  }
  std::string str() {
    const uint32_t n = u32();
    if (n > v_.size() - at_) fail(where_, "record damaged (a string runs past its end)");
    std::string s(reinterpret_cast<const char*>(v_.data() + at_), n);
    at_ += n;
    return s;
  }
  // Bounds a count read from the record by the bytes left (each item takes >= `min_bytes`).
  uint32_t count(size_t min_bytes) {
    const uint32_t n = u32();
    if (uint64_t(n) * min_bytes > v_.size() - at_) fail(where_, "record damaged (a count exceeds its bytes)");
    return n;
  }
  void version(uint32_t want) {
    const uint32_t v = u32();
    if (v != want) fail(where_, "record of version " + std::to_string(v) + ", this build reads " + std::to_string(want));
  }
  void end() {
    if (at_ != v_.size()) fail(where_, "record damaged (trailing bytes)");
  }

 private:
  void raw(void* p, size_t n) {
    if (n > v_.size() - at_) fail(where_, "record damaged (truncated)");
    std::memcpy(p, v_.data() + at_, n);
    at_ += n;
  }
  const std::vector<uint8_t>& v_;
  const std::string& where_;
  size_t at_ = 0;
};

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += char(c);
    } else if (c < 0x20) {
      char b[8];
      std::snprintf(b, sizeof b, "\\u%04x", c);
      out += b;
    } else {
      out += char(c);
    }
  }
  return out + "\"";
}

}  // namespace

ModelIdentity model_identity(const Model& m) {
  const Config& c = m.config;
  std::string d = std::string(format_name(m.format)) + " v" + std::to_string(m.format_version) + " " + m.format_detail;
  char buf[256];
  std::snprintf(buf, sizeof buf, " dim=%d hidden=%d layers=%d heads=%d kv_heads=%d vocab=%d seq=%d eps=%a theta=%a rope=%d",
                c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size, c.seq_len, double(c.norm_eps),
                double(c.rope_theta), int(c.rope_style));
  d += buf;
  auto matrix = [&](const char* name, const Matrix& w) {
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

std::string record_run(ModelState& m, const std::vector<SiteRecord>& run_sites) {
  std::string moved;
  for (const SiteRecord& r : run_sites) {
    SiteRecord* s = nullptr;
    for (SiteRecord& e : m.sites)
      if (e.name == r.name) s = &e;
    if (!s) {
      if (moved.empty()) moved = "new site " + r.name;
      m.sites.push_back(r);
      continue;
    }
    if ((s->tier != r.tier || s->spec != r.spec) && moved.empty())
      moved = s->name + " " + s->tier + " -> " + r.tier + (s->spec != r.spec ? " (specialization changed)" : "");
    s->calls += r.calls;
    s->cycles += r.cycles;
    s->tier = r.tier;
    s->spec = r.spec;
  }
  m.runs++;
  m.stable_runs = moved.empty() && m.runs > 1 ? m.stable_runs + 1 : 0;
  m.moving = moved;
  return moved;
}

std::string run_json(const RunRecord& r) {
  char rest[400];
  std::snprintf(rest, sizeof rest,
                ", \"compiles\": %" PRIu64 ", \"loaded\": %" PRIu64
                ", \"time_to_first_token_s\": %.4f, \"time_to_top_tier_s\": %.4f, \"decode_tok_s\": %.2f"
                ", \"compile_ms\": %.2f, \"converged\": %s, \"state_bytes\": %" PRIu64 "}",
                r.compiles, r.loaded, r.time_to_first_token_s, r.time_to_top_tier_s, r.decode_tok_s, r.compile_ms,
                r.converged ? "true" : "false", r.state_bytes);
  return "{\"run\": " + std::to_string(r.run) + ", \"model\": " + json_string(r.model) + rest;
}

std::string model_key(const std::string& hash) { return "model/" + hash; }
std::string run_key(const std::string& hash, uint64_t run) {
  char b[32];
  std::snprintf(b, sizeof b, "%010" PRIu64, run);
  return "run/" + hash + "/" + b;
}
std::string variant_prefix(const std::string& hash) { return "variant/" + hash + "/"; }

std::vector<uint8_t> encode(const ModelState& m) {
  Writer w;
  w.u32(kModelStateVersion);
  w.str(m.description);
  w.str(m.file_name);
  w.u64(m.runs);
  w.u32(m.stable_runs);
  w.str(m.moving);
  w.u32(uint32_t(m.sites.size()));
  for (const SiteRecord& s : m.sites) {
    w.str(s.name);
    w.u64(s.calls);
    w.u64(s.cycles);
    w.str(s.tier);
    w.str(s.spec);
  }
  return w.take();
}

ModelState decode_model_state(const std::vector<uint8_t>& v, const std::string& where) {
  Reader r(v, where);
  r.version(kModelStateVersion);
  ModelState m;
  m.description = r.str();
  m.file_name = r.str();
  m.runs = r.u64();
  m.stable_runs = r.u32();
  m.moving = r.str();
  const uint32_t n = r.count(4 + 8 + 8 + 4 + 4);
  m.sites.resize(n);
  for (SiteRecord& s : m.sites) {
    s.name = r.str();
    s.calls = r.u64();
    s.cycles = r.u64();
    s.tier = r.str();
    s.spec = r.str();
  }
  r.end();
  return m;
}

std::vector<uint8_t> encode(const RunRecord& x) {
  Writer w;
  w.u32(kRunVersion);
  w.u64(x.run);
  w.str(x.model);
  w.u64(x.compiles);
  w.u64(x.loaded);
  w.f64(x.time_to_first_token_s);
  w.f64(x.time_to_top_tier_s);
  w.f64(x.decode_tok_s);
  w.f64(x.compile_ms);
  w.u8(x.converged);
  w.u64(x.state_bytes);
  return w.take();
}

RunRecord decode_run(const std::vector<uint8_t>& v, const std::string& where) {
  Reader r(v, where);
  r.version(kRunVersion);
  RunRecord x;
  x.run = r.u64();
  x.model = r.str();
  x.compiles = r.u64();
  x.loaded = r.u64();
  x.time_to_first_token_s = r.f64();
  x.time_to_top_tier_s = r.f64();
  x.decode_tok_s = r.f64();
  x.compile_ms = r.f64();
  x.converged = r.u8() != 0;
  x.state_bytes = r.u64();
  r.end();
  return x;
}

std::string default_state_path() {
  if (const char* p = std::getenv("BAREFLOW_STATE"); p && *p) return p;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return std::string(x) + "/bareflow/state.bfs";
  if (const char* h = std::getenv("HOME"); h && *h) return std::string(h) + "/.cache/bareflow/state.bfs";
  return "";
}

void make_parent_dirs(const std::string& path) {
  for (size_t i = 1; i < path.size(); i++) {
    if (path[i] != '/') continue;
    const std::string dir = path.substr(0, i);
    if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST)
      fail(path, "cannot create directory " + dir + ": " + std::strerror(errno));
  }
}

}  // namespace bf::state

#include "state/records.h"

#include <sys/stat.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "engine/error.h"
#include "engine/fnv1a.h"

namespace bf::state {

namespace {

constexpr uint32_t kModelStateVersion = 2;  // 2: cpu, cpuid
constexpr uint32_t kRunVersion = 1;

// Each record's fields are listed once (fields() below) and walked by both of these: the writer
// and the reader cannot disagree on the layout.
class Writer {
 public:
  void operator()(uint32_t v) { raw(&v, sizeof v); }
  void operator()(uint64_t v) { raw(&v, sizeof v); }
  void operator()(double v) { raw(&v, sizeof v); }
  void operator()(bool v) { out_.push_back(v ? 1 : 0); }
  void operator()(const std::string& s) {
    (*this)(uint32_t(s.size()));
    raw(s.data(), s.size());
  }
  template <class T, class F>
  void list(const std::vector<T>& items, size_t, F each) {
    (*this)(uint32_t(items.size()));
    for (const T& i : items) each(i);
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
  void operator()(uint32_t& v) { raw(&v, sizeof v); }
  void operator()(uint64_t& v) { raw(&v, sizeof v); }
  void operator()(double& v) { raw(&v, sizeof v); }
  void operator()(bool& v) {
    uint8_t b;
    raw(&b, 1);
    if (b > 1) fail(where_, "record damaged (a flag is neither 0 nor 1)");
    v = b;
  }
  void operator()(std::string& s) {
    uint32_t n;
    (*this)(n);
    if (n > v_.size() - at_) fail(where_, "record damaged (a string runs past its end)");
    s.assign(reinterpret_cast<const char*>(v_.data() + at_), n);
    at_ += n;
  }
  // The count is bounded by the bytes left (each item takes at least `min_bytes`).
  template <class T, class F>
  void list(std::vector<T>& items, size_t min_bytes, F each) {
    uint32_t n;
    (*this)(n);
    if (uint64_t(n) * min_bytes > v_.size() - at_) fail(where_, "record damaged (a count exceeds its bytes)");
    items.resize(n);
    for (T& i : items) each(i);
  }
  void version(uint32_t want) {
    uint32_t v;
    (*this)(v);
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

template <class IO, class M>
void fields(IO& io, M& m, const ModelState*) {
  io(m.description), io(m.file_name), io(m.runs), io(m.stable_runs), io(m.moving);
  io.list(m.sites, 4 + 8 + 8 + 4 + 4, [&](auto& s) { io(s.name), io(s.calls), io(s.cycles), io(s.tier), io(s.spec); });
  io(m.cpu), io(m.cpuid);
}

template <class IO, class R>
void fields(IO& io, R& r, const RunRecord*) {
  io(r.run), io(r.model), io(r.compiles), io(r.loaded), io(r.time_to_first_token_s), io(r.time_to_top_tier_s);
  io(r.decode_tok_s), io(r.compile_ms), io(r.converged), io(r.state_bytes);
}

template <class T>
std::vector<uint8_t> encode_record(const T& x, uint32_t version) {
  Writer w;
  w(version);
  fields(w, x, static_cast<const T*>(nullptr));
  return w.take();
}

template <class T>
T decode_record(const std::vector<uint8_t>& v, const std::string& where, uint32_t version) {
  Reader r(v, where);
  r.version(version);
  T x;
  fields(r, x, static_cast<const T*>(nullptr));
  r.end();
  return x;
}

}  // namespace

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

std::vector<uint8_t> encode(const ModelState& m) { return encode_record(m, kModelStateVersion); }
std::vector<uint8_t> encode(const RunRecord& r) { return encode_record(r, kRunVersion); }
ModelState decode_model_state(const std::vector<uint8_t>& v, const std::string& where) {
  return decode_record<ModelState>(v, where, kModelStateVersion);
}
RunRecord decode_run(const std::vector<uint8_t>& v, const std::string& where) {
  return decode_record<RunRecord>(v, where, kRunVersion);
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

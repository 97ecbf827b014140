// libFuzzer target: the GGUF metadata and embedded-tokenizer path. The input is a metadata section
// (u64 key count, then key-value pairs, GGUF v3); it is put in front of stories260K-q8_0.gguf's own
// tensor infos and data, so the fuzzer spends its time on tokenizer.ggml.* and llama.* keys instead
// of rediscovering a whole model. What loads is tokenized and detokenized.
#include <cstring>
#include <string>
#include <vector>

#include "engine/error.h"
#include "engine/model.h"
#include "engine/tokenizer.h"

namespace {

// The seed model after its metadata: n_tensors, then tensor infos, padding and data.
struct Tail {
  uint64_t n_tensors = 0;
  std::vector<uint8_t> bytes;
};

// Offset just past the metadata of a well-formed GGUF v2/v3 file (the seed's; trusted).
size_t skip_metadata(const uint8_t* p) {
  size_t at = 24;
  uint64_t n_kv;
  std::memcpy(&n_kv, p + 16, 8);
  const auto u64 = [&](size_t pos) { uint64_t v; std::memcpy(&v, p + pos, 8); return v; };
  const auto u32 = [&](size_t pos) { uint32_t v; std::memcpy(&v, p + pos, 4); return v; };
  const auto scalar = [](uint32_t t) -> size_t {
    static const size_t sizes[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return t < 13 ? sizes[t] : 0;
  };
  for (uint64_t i = 0; i < n_kv; i++) {
    at += 8 + u64(at);  // key
    const uint32_t type = u32(at);
    at += 4;
    if (type == 8) {
      at += 8 + u64(at);
    } else if (type == 9) {
      const uint32_t et = u32(at);
      const uint64_t n = u64(at + 4);
      at += 12;
      for (uint64_t k = 0; k < n; k++) at += et == 8 ? 8 + u64(at) : scalar(et);
    } else {
      at += scalar(type);
    }
  }
  return at;
}

const Tail& tail() {
  static const Tail t = [] {
    Tail r;
    const bf::MappedFile f = bf::MappedFile::open(BF_SHARED_MODELS "/stories260K-q8_0.gguf");
    std::memcpy(&r.n_tensors, f.data() + 8, 8);
    const size_t at = skip_metadata(f.data());
    r.bytes.assign(f.data() + at, f.data() + f.size());
    return r;
  }();
  return t;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const Tail& t = tail();
  std::vector<uint8_t> file;
  file.reserve(16 + size + t.bytes.size());
  const uint32_t version = 3;
  file.insert(file.end(), {'G', 'G', 'U', 'F'});
  file.insert(file.end(), reinterpret_cast<const uint8_t*>(&version), reinterpret_cast<const uint8_t*>(&version) + 4);
  file.insert(file.end(), reinterpret_cast<const uint8_t*>(&t.n_tensors),
              reinterpret_cast<const uint8_t*>(&t.n_tensors) + 8);
  file.insert(file.end(), data, data + size);  // key count, then the pairs
  file.insert(file.end(), t.bytes.begin(), t.bytes.end());
  try {
    const auto m = bf::load_model("fuzz", bf::MappedFile::borrow(file.data(), file.size()));
    if (!m->vocab) return 0;
    const bf::Tokenizer tok = bf::Tokenizer::from_vocab(*m->vocab, "fuzz");
    const std::vector<int> ids = tok.encode("Once upon a time, Lily \xC3\xA9 \xF0\x9F\x98\x80", true, false, 4096);
    for (size_t i = 1; i < ids.size(); i++) (void)tok.decode(ids[i - 1], ids[i]);
    (void)tok.decode(tok.bos(), tok.eos());
  } catch (const bf::Error&) {
  }
  return 0;
}

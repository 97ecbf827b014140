// libFuzzer target: the GGUF loader (any bytes after the magic) and its embedded tokenizer.
#include <cstring>
#include <vector>

#include "engine/tokenizer.h"
#include "tests/fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Every input is a GGUF file: the fuzzer need not discover the magic.
  std::vector<uint8_t> file(size + 4);
  std::memcpy(file.data(), "GGUF", 4);
  if (size) std::memcpy(file.data() + 4, data, size);
  bf::fuzz::load_and_run(file.data(), file.size(), [](bf::Model& m) {
    bf::load_gguf(m);
    if (m.vocab) {
      const bf::Tokenizer tok = bf::Tokenizer::from_vocab(*m.vocab);
      const std::vector<int> ids = tok.encode("Once upon a time \xF0\x9F\x98\x80", true, false, 4096);
      for (size_t i = 1; i < ids.size(); i++) (void)tok.decode(ids[i - 1], ids[i]);
    }
  });
  return 0;
}

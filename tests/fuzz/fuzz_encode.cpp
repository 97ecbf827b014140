// libFuzzer target: prompt encoding (BPE merging, byte fallback) of arbitrary text with the real
// 32,000-token llama vocabulary (first byte even) or tok512 (odd); the tokens must decode back.
#include <cstdlib>
#include <string>
#include <string_view>

#include "engine/error.h"
#include "engine/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  static const bf::Tokenizer big = bf::Tokenizer::from_file(BF_SHARED_MODELS "/tokenizer.bin", 32000);
  static const bf::Tokenizer small = bf::Tokenizer::from_file(BF_SHARED_MODELS "/tok512.bin", 512);
  const bf::Tokenizer& t = data[0] & 1 ? small : big;
  const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  const std::vector<int> ids = t.encode(text, true, false, 1 << 20);
  std::string back;
  for (size_t i = 1; i < ids.size(); i++) back += t.decode(ids[i - 1], ids[i]);
  if (back != text) std::abort();  // encode loses nothing: every byte has a token or a byte token
  return 0;
}

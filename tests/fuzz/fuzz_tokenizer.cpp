// libFuzzer target: tokenizer.bin parsing (first byte odd) and encode/decode of arbitrary text with
// the real tok512 vocabulary (first byte even).
#include <memory>
#include <string_view>

#include "engine/error.h"
#include "engine/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    if (data[0] & 1) {
      const bf::Tokenizer t = bf::Tokenizer::from_bytes("fuzz", rest, 512);
      for (int id : t.encode(rest.substr(0, 64), true, true, 512)) (void)t.decode(1, id);
    } else {
      static const bf::Tokenizer t = bf::Tokenizer::from_file(BF_SHARED_MODELS "/tok512.bin", 512);
      const std::vector<int> ids = t.encode(rest, true, false, 512);
      for (size_t i = 1; i < ids.size(); i++) (void)t.decode(ids[i - 1], ids[i]);
    }
  } catch (const bf::Error&) {
  }
  return 0;
}

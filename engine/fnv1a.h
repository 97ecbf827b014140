// FNV-1a 64: the one non-cryptographic hash the project names things with (model identities, the
// kernel bitcode in a variant key, variant symbols). Not a checksum: the store uses CRC-32C.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace bf {

inline uint64_t fnv1a(std::string_view bytes) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (const unsigned char c : bytes) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

}  // namespace bf

// A read-only memory mapping of a whole file: the platform seam for model and tokenizer bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace bf {

class MappedFile {
 public:
  MappedFile() = default;
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;

  // Maps `path`; throws Error("<path>: <reason>") if it cannot be opened, is empty or a directory.
  static MappedFile open(const std::string& path);
  // Wraps caller-owned bytes (tests, fuzzers): nothing is unmapped on destruction.
  static MappedFile borrow(const void* data, size_t size);

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  bool owned_ = false;
};

}  // namespace bf

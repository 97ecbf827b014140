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

  // Maps `path`; throws Error("<path>: <reason>") if it cannot be opened, is empty or is not a
  // regular file (a FIFO or device is refused at once, never waited on). While the mapping lives,
  // a SIGBUS inside it (the file was truncated by another process) ends the process with one line
  // "bareflow: <path>: changed while in use ..." and exit status 2.
  static MappedFile open(const std::string& path);
  // Wraps caller-owned bytes (tests, fuzzers): nothing is unmapped on destruction.
  static MappedFile borrow(const void* data, size_t size);

  const uint8_t* data() const { return data_; }
  // Tells the kernel the whole pages inside [p, p + n) will not be read again, so they leave this
  // process's resident set (a later read would fetch them again: nothing is lost). Advisory:
  // borrowed bytes, and a kernel that ignores the hint, keep them.
  void drop_pages(const void* p, size_t n) const;
  size_t size() const { return size_; }

 private:
  void release();

  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  bool owned_ = false;
  int slot_ = -1;  // index in the registry of live mappings the SIGBUS handler consults
};

// Zero-filled private memory of its own mapping, asked for in huge pages (the kernel may decline):
// large read-mostly buffers such as repacked weights, streamed once per token (fewer TLB misses).
class AnonymousMemory {
 public:
  AnonymousMemory() = default;
  ~AnonymousMemory();
  AnonymousMemory(const AnonymousMemory&) = delete;
  AnonymousMemory& operator=(const AnonymousMemory&) = delete;
  AnonymousMemory(AnonymousMemory&& o) noexcept;
  AnonymousMemory& operator=(AnonymousMemory&& o) noexcept;

  // Null data() when the memory cannot be mapped.
  static AnonymousMemory allocate(size_t size);
  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace bf

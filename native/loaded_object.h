// A relocatable x86-64 ELF object (what the JIT's code generator emits and the store keeps) made
// callable without LLVM: its allocated sections copied into fresh pages, relocated against
// themselves and a fixed table of the engine's functions, then made executable (code) or read-only
// (constants) — never writable and executable at once. This is how stored code is installed on a
// warm start and the only way the LLVM-free appliance (bareflow export) runs its code.
//
// What it accepts is what LLVM's x86-64 ELF codegen produces for the kernels (small code model):
// PROGBITS/NOBITS sections, relocations R_X86_64_64, PC32, PLT32, PC64, 32, 32S, GOTPCREL and
// (REX_)GOTPCRELX. Everything else, and every offset, index and size that points outside the
// object, is refused with one line (bf::Error): the bytes come from a file.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace bf::native {

struct Symbol {
  const char* name;
  const void* addr;
};

// The functions JIT'd kernels may call (the optimizer's memset/memcpy/memmove, the reference
// kernels' libm calls): the one table both LLJIT and this loader resolve undefined symbols from.
std::span<const Symbol> runtime_symbols();

class LoadedObject {
 public:
  // Throws bf::Error naming the problem when `elf` is malformed or uses something unsupported, or
  // when it needs a symbol `externals` does not define.
  static LoadedObject load(std::span<const uint8_t> elf, std::span<const Symbol> externals = runtime_symbols());
  LoadedObject() = default;
  LoadedObject(LoadedObject&& o) noexcept { *this = std::move(o); }
  LoadedObject& operator=(LoadedObject&& o) noexcept;
  LoadedObject(const LoadedObject&) = delete;
  LoadedObject& operator=(const LoadedObject&) = delete;
  ~LoadedObject();

  // The address of a global symbol the object defines, or null.
  void* find(std::string_view name) const;
  // Bytes of the object's executable sections.
  uint64_t code_bytes() const { return code_bytes_; }
  // The pages holding the object (code, constants, data, GOT and call stubs), page-rounded.
  size_t mapped_bytes() const { return size_; }

 private:
  void* base_ = nullptr;
  size_t size_ = 0;
  uint64_t code_bytes_ = 0;
  std::vector<std::pair<std::string, uintptr_t>> globals_;
};

}  // namespace bf::native

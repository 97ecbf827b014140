// The function symbols of an ELF64 executable's symbol table: what `--report-code` sums and
// `bareflow coverage` plants breakpoints on. No LLVM.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace bf::native {

struct FunctionSymbol {
  uint64_t addr = 0, size = 0;
  std::string name;  // as mangled
  bool in_code = false;  // its section is executable
};

// Every STT_FUNC symbol of non-zero size, in table order (aliases included). Empty when the file
// has no symbol table (stripped); throws bf::Error when it is not an ELF64 file or its tables run
// out of it.
std::vector<FunctionSymbol> function_symbols(const std::string& path);

// Itanium-mangled names in namespace llvm contain "4llvm" (llvm::, templates over llvm types);
// LLVM's C API is LLVM*, its C support code llvm_*.
inline bool is_llvm_symbol(std::string_view name) {
  return name.find("4llvm") != std::string_view::npos || name.rfind("LLVM", 0) == 0 || name.rfind("llvm", 0) == 0;
}

}  // namespace bf::native

#include "jit/code_report.h"

#include <vector>

#include "engine/error.h"
#include "native/elf_symbols.h"

namespace bf::jit {

BinaryCode measure_binary_code() {
  BinaryCode b;
  std::vector<native::FunctionSymbol> fns;
  try {
    fns = native::function_symbols("/proc/self/exe");
  } catch (const Error&) {
    return b;  // unreadable, or not ELF: nothing to measure
  }
  for (const native::FunctionSymbol& f : fns) {
    b.functions++;
    b.function_bytes += f.size;
    if (native::is_llvm_symbol(f.name)) {
      b.llvm_functions++;
      b.llvm_bytes += f.size;
    }
  }
  b.ok = !fns.empty();
  return b;
}

void print_binary_code(FILE* out, const BinaryCode& b, uint64_t jit_native_bytes, uint64_t bitcode_bytes) {
  if (!b.ok) {
    std::fprintf(out, "code: the executable has no symbol table to measure\n");
  } else {
    std::fprintf(out, "code: executable functions %.1f MB (%llu), of which LLVM %.1f MB (%llu, %.1f%%)\n",
                 double(b.function_bytes) / 1e6, (unsigned long long)b.functions, double(b.llvm_bytes) / 1e6,
                 (unsigned long long)b.llvm_functions,
                 b.function_bytes ? 100.0 * double(b.llvm_bytes) / double(b.function_bytes) : 0.0);
  }
  std::fprintf(out, "code: kernel bitcode embedded %llu B; native code the JIT produced %llu B\n",
               (unsigned long long)bitcode_bytes, (unsigned long long)jit_native_bytes);
}

}  // namespace bf::jit

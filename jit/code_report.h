// `--report-code`: which kernels and tiers ran, and how much of the executable is LLVM against the
// bytes of native code the JIT produced: the evidence for shrinking the image later.
#pragma once

#include <cstdint>
#include <cstdio>

namespace bf::jit {

struct BinaryCode {
  bool ok = false;  // false when the executable has no symbol table to read (stripped, unikernel)
  uint64_t functions = 0, function_bytes = 0;
  uint64_t llvm_functions = 0, llvm_bytes = 0;  // in namespace llvm, or LLVM's C API
};

// Sums the function symbols of /proc/self/exe.
BinaryCode measure_binary_code();

void print_binary_code(FILE* out, const BinaryCode& b, uint64_t jit_native_bytes, uint64_t bitcode_bytes);

}  // namespace bf::jit

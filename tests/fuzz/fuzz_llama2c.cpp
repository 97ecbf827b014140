// libFuzzer target: the llama2.c checkpoint loader (v0, v1, v2) on arbitrary bytes. A file that
// loads is also run for two positions, so that any weight view reaching past the input is caught
// by AddressSanitizer.
#include "tests/fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  bf::fuzz::load_and_run(data, size, [](bf::Model& m) { bf::load_llama2c(m); });
  return 0;
}

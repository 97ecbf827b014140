// kernel_synth_model OUT.gguf SHAPE TYPE: writes one of the engine's synthetic benchmark models
// (bench/synthetic.h) to a file, so it can be passed to the unikernel as a boot module.
#include <cstdio>
#include <exception>
#include <string>

#include "bench/synthetic.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: kernel_synth_model OUT.gguf stories15M|stories42M|stories110M|tinyllama-1.1b f32|q8_0|q4_0\n");
    return 2;
  }
  const std::string t = argv[3];
  const bf::DType type = t == "f32" ? bf::DType::F32 : t == "q8_0" ? bf::DType::Q8_0 : t == "q4_0" ? bf::DType::Q4_0 : bf::DType::F16;
  try {
    const uint64_t n = bf::bench::write_synthetic_gguf(argv[1], bf::bench::find_shape("shape", argv[2]), type, 1);
    std::printf("%s: %llu bytes\n", argv[1], (unsigned long long)n);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kernel_synth_model: %s\n", e.what());
    return 1;
  }
  return 0;
}

// bench_synth_model OUT.gguf SHAPE TYPE: writes one of bench's synthetic models (bench/synthetic.h)
// to a file, e.g. to pass it to the unikernel as a boot module (kernel/tools/bench_decode.sh).
// Bad arguments: one line on stderr, exit 2. The model is written beside OUT and renamed to it when
// complete: an error or a signal leaves neither a partial OUT nor the temporary file.
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "bench/synthetic.h"
#include "bench/temp_files.h"
#include "engine/error.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr,
                 "usage: bench_synth_model OUT.gguf stories15M|stories42M|stories110M|tinyllama-1.1b "
                 "f32|f16|q8_0|q4_0\n");
    return 2;
  }
  try {
    const bf::bench::ModelShape& shape = bf::bench::find_shape("shape", argv[2]);
    const bf::DType type = bf::bench::find_format("type", argv[3]);
    const std::string out = argv[1];
    bf::bench::TempFile tmp(out + ".part-" + std::to_string(getpid()));
    const uint64_t n = bf::bench::write_synthetic_gguf(tmp.path(), shape, type, 1);
    if (std::rename(tmp.path().c_str(), out.c_str()) != 0) bf::fail(out, std::strerror(errno));
    tmp.keep();
    std::printf("%s: %llu bytes\n", argv[1], (unsigned long long)n);
  } catch (const bf::Error& e) {
    std::fprintf(stderr, "bench_synth_model: %s\n", e.what());
    return 2;
  }
  return 0;
}

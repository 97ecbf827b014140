// bench_synth_model OUT SHAPE FORMAT [--vocab TOKENIZER]: writes one of bench's synthetic models (bench/synthetic.h)
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
  if (argc != 4 && !(argc == 6 && std::strcmp(argv[4], "--vocab") == 0)) {
    std::fprintf(stderr,
                 "usage: bench_synth_model OUT SHAPE FORMAT [--vocab TOKENIZER.bin]\n"
                 "  SHAPE: stories15M|stories42M|stories110M|tinyllama-1.1b\n"
                 "  FORMAT: f32|f16|q8_0|q4_0 (GGUF), llama2c-v0 (F32, run.c), llama2c-v2 (Q8_0, runq.c)\n"
                 "  --vocab: a GGUF carrying the vocabulary of a llama2.c tokenizer (llama.cpp needs it)\n");
    return 2;
  }
  try {
    const bf::bench::ModelShape& shape = bf::bench::find_shape("shape", argv[2]);
    const std::string format = argv[3], out = argv[1];
    bf::bench::TempFile tmp(out + ".part-" + std::to_string(getpid()));
    uint64_t n;
    if (format == "llama2c-v0" || format == "llama2c-v2") {
      if (argc == 6) bf::fail("--vocab", "llama2.c checkpoints keep the tokenizer in its own file");
      n = bf::bench::write_synthetic_llama2c(tmp.path(), shape, format == "llama2c-v0" ? 0 : 2, 1);
    } else {
      bf::DType type;
      try {
        type = bf::bench::find_format("format", format);
      } catch (const bf::Error&) {
        bf::fail("format", "'" + format + "' is not one of f32, f16, q8_0, q4_0, llama2c-v0, llama2c-v2");
      }
      bf::bench::Vocab vocab;
      if (argc == 6) vocab = bf::bench::read_llama2c_vocab(argv[5], shape.vocab_size);
      n = bf::bench::write_synthetic_gguf(tmp.path(), shape, type, 1, argc == 6 ? &vocab : nullptr);
    }
    if (std::rename(tmp.path().c_str(), out.c_str()) != 0) bf::fail(out, std::strerror(errno));
    tmp.keep();
    std::printf("%s: %llu bytes\n", argv[1], (unsigned long long)n);
  } catch (const bf::Error& e) {
    std::fprintf(stderr, "bench_synth_model: %s\n", e.what());
    return 2;
  }
  return 0;
}

// Synthetic models of real shapes with deterministic random weights, written as GGUF v3 files so
// that benchmarks load them through the normal loader (mmap included). Speed does not depend on
// the weights' values; the files are never committed, and the bench deletes them after use.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/kernels.h"

namespace bf::bench {

struct ModelShape {
  std::string name;
  int dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
  bool shared_classifier;  // llama2.c stories models share the embedding; TinyLlama does not
};

// stories15M, stories42M, stories110M, tinyllama-1.1b.
const std::vector<ModelShape>& known_shapes();
// Throws bf::Error naming `flag` for an unknown name.
const ModelShape& find_shape(const std::string& flag, const std::string& name);

// "f32", "f16", "q8_0" or "q4_0" (or upper case); throws bf::Error naming `flag` otherwise.
DType find_format(const std::string& flag, const std::string& name);

// A tokenizer's vocabulary (llama2.c tokenizer.bin: pieces and scores), for a GGUF other engines
// load too (llama.cpp needs the vocabulary in the file).
struct Vocab {
  std::vector<std::string> pieces;
  std::vector<float> scores;
};
// Reads a llama2.c tokenizer.bin of `vocab_size` tokens; throws bf::Error naming the file.
Vocab read_llama2c_vocab(const std::string& path, int vocab_size);

// Writes `path`: every matrix in `type` (F32, F16, Q8_0 or Q4_0), norms in F32. Same seed, same
// bytes. With `vocab`, the file carries it as a llama (SentencePiece) tokenizer. Returns the file
// size.
uint64_t write_synthetic_gguf(const std::string& path, const ModelShape& shape, DType type, uint64_t seed,
                              const Vocab* vocab = nullptr);

// The same shapes as llama2.c checkpoints, for run.c (version 0: F32) and runq.c (version 2: Q8_0
// in groups of 64, or the largest power of two dividing dim and hidden_dim). Returns the file size.
uint64_t write_synthetic_llama2c(const std::string& path, const ModelShape& shape, int version, uint64_t seed);

}  // namespace bf::bench

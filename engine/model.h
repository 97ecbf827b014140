// A loaded llama-architecture model: its configuration and views of its weights inside the
// memory-mapped file (no copies), plus the tokenizer vocabulary when the file carries one (GGUF).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/error.h"
#include "engine/mapped_file.h"
#include "kernels/kernels.h"

namespace bf {

struct Config {
  int dim = 0;         // transformer width
  int hidden_dim = 0;  // FFN width
  int n_layers = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int vocab_size = 0;
  int seq_len = 0;  // maximum context
  float norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  RopeStyle rope_style = RopeStyle::Interleaved;

  int head_size() const { return dim / n_heads; }
  int kv_dim() const { return head_size() * n_kv_heads; }
};

struct LayerWeights {
  const float* rms_att = nullptr;  // [dim]
  const float* rms_ffn = nullptr;  // [dim]
  Matrix wq, wk, wv, wo;           // [dim x dim], [kv_dim x dim] x2, [dim x dim]
  Matrix w1, w2, w3;               // gate [hidden x dim], down [dim x hidden], up [hidden x dim]
};

struct Weights {
  Matrix token_embedding;  // [vocab x dim]
  std::vector<LayerWeights> layers;
  const float* rms_final = nullptr;  // [dim]
  Matrix classifier;                 // [vocab x dim]; the embedding when shared
};

// Tokenizer vocabulary embedded in the model file (GGUF). Pieces use ' ' for SentencePiece's U+2581.
struct EmbeddedVocab {
  std::vector<std::string> pieces;
  std::vector<float> scores;
  int bos = 1, eos = 2;
  std::string chat_template;  // tokenizer.chat_template (Jinja text), "" when absent
};

enum class ModelFormat : uint8_t { Llama2cV0, Llama2cV1, Llama2cV2, Gguf };

struct Model {
  std::string path;
  ModelFormat format = ModelFormat::Llama2cV0;
  int format_version = 0;  // llama2.c version, or GGUF version
  std::string format_detail;  // e.g. GGUF tensor data layout, llama2.c group size
  Config config;
  Weights weights;
  std::unique_ptr<EmbeddedVocab> vocab;  // null for llama2.c files
  MappedFile file;
  std::vector<float> owned;  // f32 norm vectors converted from F16 storage (small)
  AnonymousMemory repacked;  // the repacked matrices (repack_weights), or none

  uint64_t parameter_count() const;
  // Bytes of weights read to produce one token: every matrix once plus one embedding row.
  uint64_t bytes_per_token() const;
};

// Detects the format from the file's magic and loads it. Throws bf::Error naming the file and the
// problem on any malformed input.
std::unique_ptr<Model> load_model(const std::string& path);
// The same from bytes already in memory (`name` is used in messages): fuzzers and tests.
std::unique_ptr<Model> load_model(const std::string& name, MappedFile file);

// Replaces the view of every repackable matrix (kernels.h: Q8_0 and Q4_0 with rows % 8 == 0 and
// cols % 32 == 0) by its repacked form (Q8_0x8, Q4_0x8) in m.repacked, piece by piece, dropping
// the file pages each piece was read from: the weights stay resident once, not twice. Every
// kernel computes the same bits from either layout; the SIMD ones read the repacked one with
// contiguous loads and no cross-lane reduction. Returns the bytes repacked; throws Error naming
// the file when the memory for them cannot be allocated.
uint64_t repack_weights(Model& m);
// The matrices repack_weights rewrites, each distinct one once, in the order it lays them out in
// m.repacked; and the bytes they take repacked (0: nothing to repack).
std::vector<Matrix*> repackable_matrices(Model& m);
uint64_t repacked_bytes(Model& m);
// repack_weights without the work: `repacked` already holds what it would write (a copy kept
// from an earlier run, state/weights_cache.h). Throws Error when its size does not fit.
void use_repacked(Model& m, AnonymousMemory repacked);

// Format-specific loaders (engine/llama2c.cpp, engine/gguf.cpp); `model.file` is already mapped.
void load_llama2c(Model& model);
void load_gguf(Model& model);

// Shared validation of a configuration read from any format.
void validate_config(const std::string& path, const Config& c);

const char* format_name(ModelFormat f);

// Bytes of the KV caches (f32 keys and values of every layer) of `slots` sequences of `positions`.
uint64_t kv_cache_bytes(const Config& c, int positions, int slots = 1);
// Before the KV cache is allocated: throws Error naming the model file, the positions, slots and
// the size when it is larger than the memory this process may use (RAM, RLIMIT_AS, RLIMIT_DATA).
void check_kv_cache_fits(const Model& m, int positions, int slots = 1);
// The same message when the allocation itself failed.
[[noreturn]] void fail_kv_cache(const Model& m, int positions, const std::string& why, int slots = 1);

// A model as stored state knows it: format, configuration and every matrix's type and shape (what
// decides which compiled code fits it), not the weights' values. `hash` (16 hex digits) keys the
// store's records and an exported appliance's check; `description` is compared too, so a hash
// collision cannot hand one model's code to another.
struct ModelIdentity {
  std::string hash;
  std::string description;
};
ModelIdentity model_identity(const Model& m);

}  // namespace bf

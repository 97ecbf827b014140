// Shared by the loader fuzz targets: load from bytes, and run what loaded.
#pragma once

#include <cstdint>
#include <cstdlib>

#include "engine/error.h"
#include "engine/model.h"
#include "engine/transformer.h"

namespace bf::fuzz {

template <typename Load>
void load_and_run(const uint8_t* data, size_t size, Load load) {
  Model m;
  m.path = "fuzz";
  m.file = MappedFile::borrow(data, size);
  try {
    load(m);
    validate_config(m.path, m.config);
  } catch (const Error&) {
    return;  // refused with a message: the expected outcome for most inputs
  }
  const Config& c = m.config;
  // Run small models only: the KV cache and logits are allocated for real.
  const uint64_t cache = uint64_t(c.n_layers) * uint64_t(c.seq_len) * uint64_t(c.kv_dim());
  if (cache > (1u << 22) || uint64_t(c.vocab_size) * uint64_t(c.dim) > (1u << 24) || c.hidden_dim > (1 << 16))
    return;
  Transformer t(m, reference_kernels());
  for (int pos = 0; pos < 2 && pos < c.seq_len; pos++) (void)t.forward(pos % c.vocab_size, pos);
}

}  // namespace bf::fuzz

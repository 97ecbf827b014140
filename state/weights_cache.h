// Repacked weights kept across runs: a model's Q8_0 / Q4_0 matrices in the kernels' layout
// (engine/repack.cpp), written once beside the store and read back by later runs instead of
// repacked again. One file per model file, replaced when the model file, its shapes or the
// engine's source change; a damaged copy is noticed (checksum) and rewritten.
#pragma once

#include <cstdio>
#include <string>

#include "engine/model.h"

namespace bf::state {

// <the store's folder>/repacked/<16 hex digits naming the model file's absolute path>.bfw, or ""
// without a store path.
std::string weights_cache_path(const std::string& state_path, const std::string& model_path);

// The copies kept beside the store at `state_path` (finished ones and a crashed run's temporary
// files): how many and their bytes; with `remove`, deleted (bareflow state clear).
struct WeightsCacheFiles {
  size_t files = 0;
  uint64_t bytes = 0;
};
WeightsCacheFiles weights_cache_files(const std::string& state_path, bool remove);

enum class WeightsCache : uint8_t {
  Nothing,   // the model has no repackable matrix
  Loaded,    // read from the cached copy: nothing repacked
  Saved,     // repacked, and the copy written for the next run
  Repacked,  // repacked; no copy kept (why: one note on `log`, unless the platform has no files there)
};
const char* weights_cache_name(WeightsCache w);

// repack_weights(m) through the cache file at `path`, for a model loaded from `model_path` and not
// yet repacked. A copy is used only when its header names this model file as it is now (size,
// modification time, inode, device, a checksum of sampled source bytes), its shapes and this
// engine's source, and its checksum holds; otherwise the weights are repacked and the copy
// replaced crash-safely (temporary file, fsync, rename, fsync of the folder), when the disk has
// room for it. A damaged copy is one note on `log`. Throws only what repack_weights throws.
WeightsCache repack_with_cache(Model& m, const std::string& model_path, const std::string& path, FILE* log);

}  // namespace bf::state

// What the JIT keeps across runs, as it sees it: a cache of compiled objects under keys naming
// everything that decides whether the code may run here, and the tier each unit reached before.
// Implemented by state/ (above jit/), which keeps both in the persistent store. Free of LLVM headers.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "jit/options.h"

namespace bf::jit {

class CodeCache {
 public:
  virtual ~CodeCache() = default;
  // The tier `unit` ("wq", ..., "qkv", "w13") ran at when an earlier run of this model ended; Aot if
  // it never ran compiled code (or the store does not know the model).
  virtual Tier learned_tier(std::string_view unit) const = 0;
  // The relocatable object stored under `key` (Runtime::variant_key), or null. The store has
  // checked its checksum; a damaged one was reported and is not offered.
  virtual const std::vector<uint8_t>* object(const std::string& key) const = 0;
};

// A unit (site or fused group) as a run left it: what the store records.
struct UnitOutcome {
  std::string name;   // "wq", ..., "qkv"
  std::string state;  // state_name(): "top", "counting", "rejected", ...
  std::string why;    // Failed, Rejected: the reason
  Tier tier = Tier::Aot;  // the tier running at the end
  uint64_t calls = 0, cycles = 0;  // over every tier
  std::string spec;  // its specialization ("Q8_0 g32 768x768 on znver4"), "" when it ran AOT only
  // The running variant's key and object (compiled tiers only; key "" otherwise). loaded: the
  // object came from the cache (nothing new to store).
  std::string key;
  std::string symbol;  // the function the object defines (variant_symbol())
  std::shared_ptr<const std::string> object;
  bool loaded = false;
  // A cached variant that verification rejected (the store must drop it): its key, else "".
  std::string rejected_key;
};

}  // namespace bf::jit

// What the store holds, as typed records: per model its runs and merged profile (and from that,
// convergence), one record per run for `bareflow state report`. Values are encoded with explicit
// lengths and decoded with every length checked: a record from a newer build or a bug is an Error,
// never an out-of-bounds read.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/model.h"
#include "state/store.h"

namespace bf::state {

using bf::ModelIdentity;  // engine/model.h
using bf::model_identity;

// One call site (or fused group) as a run left it.
struct SiteRecord {
  std::string name;  // "wq", "qkv", ...
  uint64_t calls = 0;
  uint64_t cycles = 0;
  std::string tier;  // the tier it reached: "AOT", "O3", ...
  std::string spec;  // its specialization (type, shape, CPU), "" when none
  bool operator==(const SiteRecord&) const = default;
};

struct ModelState {
  std::string description;  // ModelIdentity::description
  std::string file_name;    // the model file's name when last run
  uint64_t runs = 0;
  uint32_t stable_runs = 0;  // consecutive runs in which no site moved and none appeared
  std::string moving;        // what moved in the last run ("" when nothing did)
  std::vector<SiteRecord> sites;
  // The machine whose code the model's variants are: LLVM's CPU name and feature string ("znver4
  // +avx,..."), and its CPUID words (native::format_cpu_features). Export compiles for, and an
  // appliance demands, exactly that machine. "" until a run with the JIT.
  std::string cpu, cpuid;
};

constexpr uint32_t kDefaultConvergenceRuns = 2;
inline bool converged(const ModelState& m, uint32_t k = kDefaultConvergenceRuns) { return m.stable_runs >= k; }

// Merges one run's sites into the model's state: counts add up, tiers and specializations are the
// run's. A site whose tier or specialization changed, or a new site, resets stable_runs.
// Returns a line saying what moved ("" when nothing did).
std::string record_run(ModelState& m, const std::vector<SiteRecord>& run_sites);

// One run, with exactly the keys of `bareflow state report --json`.
struct RunRecord {
  uint64_t run = 0;
  std::string model = "";  // the model file's name
  uint64_t compiles = 0;
  uint64_t loaded = 0;  // variants installed from the store
  double time_to_first_token_s = 0;
  double time_to_top_tier_s = 0;
  double decode_tok_s = 0;
  double compile_ms = 0;
  bool converged = false;
  uint64_t state_bytes = 0;
};
std::string run_json(const RunRecord& r);
// `s` as a JSON string literal (quotes, backslashes and control bytes escaped).
std::string json_string(const std::string& s);

// Store keys: "model/<hash>", "run/<hash>/<run, 10 digits>" (report order), "variant/<hash>/...".
std::string model_key(const std::string& hash);
std::string run_key(const std::string& hash, uint64_t run);
std::string variant_prefix(const std::string& hash);

std::vector<uint8_t> encode(const ModelState& m);
std::vector<uint8_t> encode(const RunRecord& r);
// Throw bf::Error("<where>: ...") on a value that does not decode exactly.
ModelState decode_model_state(const std::vector<uint8_t>& v, const std::string& where);
RunRecord decode_run(const std::vector<uint8_t>& v, const std::string& where);

// --state's default: $BAREFLOW_STATE, else $XDG_CACHE_HOME/bareflow/state.bfs, else
// $HOME/.cache/bareflow/state.bfs ("" if none of them is set).
std::string default_state_path();
// Creates the directories above `path` (mkdir -p); throws bf::Error if it cannot.
void make_parent_dirs(const std::string& path);

}  // namespace bf::state

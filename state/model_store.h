// One model's part of the store, as a run uses it: before the first token, the tiers each site
// learned and the compiled objects whose keys match this process (jit::CodeCache); after the
// last, the run's outcome merged into the model's profile, its new variants, and its run record.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "jit/code_cache.h"
#include "state/records.h"
#include "state/store.h"

namespace bf::state {

class ModelStore final : public jit::CodeCache {
 public:
  // A model record that does not decode (another build's, or damaged) is reported on `log` (one
  // line) and replaced by a fresh one at record().
  ModelStore(Store& store, ModelIdentity id, FILE* log);

  jit::Tier learned_tier(std::string_view unit) const override;
  const std::vector<uint8_t>* object(const std::string& key) const override;

  // Merges the run into the model's state (convergence), keeps each unit's running variant (one
  // per unit: an older one of the same unit goes), drops variants verification rejected, appends
  // the run record and commits. `run`'s run, model, converged and state_bytes are filled here.
  // `cpu` and `cpuid` name the machine the units' code was compiled for (ModelState::cpu); ""
  // (a run without the JIT) keeps the previous ones.
  RunRecord record(const std::vector<jit::UnitOutcome>& units, RunRecord run, const std::string& file_name,
                   const std::string& cpu = "", const std::string& cpuid = "");

  const ModelState& model() const { return m_; }
  const ModelIdentity& identity() const { return id_; }

 private:
  Store& store_;
  ModelIdentity id_;
  ModelState m_;
};

}  // namespace bf::state

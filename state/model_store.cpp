#include "state/model_store.h"

#include <cstdio>

#include "engine/error.h"

namespace bf::state {

ModelStore::ModelStore(Store& store, ModelIdentity id, FILE* log) : store_(store), id_(std::move(id)) {
  m_.description = id_.description;
  const Entry* e = store_.find(Kind::Model, model_key(id_.hash));
  if (!e) return;
  try {
    ModelState m = decode_model_state(e->value, store_.path() + ": " + e->key);
    // Same hash, another model: a collision must not hand one model's profile to another.
    if (m.description != id_.description) {
      std::fprintf(log, "bareflow: state: %s: %s holds another model under this model's hash; starting afresh\n",
                   printable(store_.path()).c_str(), e->key.c_str());
      return;
    }
    m_ = std::move(m);
  } catch (const Error& err) {
    std::fprintf(log, "bareflow: state: %s; starting this model afresh\n", err.message.c_str());
  }
}

jit::Tier ModelStore::learned_tier(std::string_view unit) const {
  for (const SiteRecord& s : m_.sites) {
    if (s.name != unit) continue;
    for (size_t t = 0; t < jit::kTierCount; t++)
      if (s.tier == jit::tier_name(jit::Tier(t))) return jit::Tier(t);
  }
  return jit::Tier::Aot;
}

const std::vector<uint8_t>* ModelStore::object(const std::string& key) const {
  if (m_.runs == 0) return nullptr;  // a fresh (or replaced) model record: its variants are not trusted
  const Entry* e = store_.find(Kind::Variant, variant_prefix(id_.hash) + key);
  return e ? &e->value : nullptr;
}

RunRecord ModelStore::record(const std::vector<jit::UnitOutcome>& units, RunRecord run, const std::string& file_name,
                             const std::string& cpu, const std::string& cpuid) {
  const std::string prefix = variant_prefix(id_.hash);
  if (m_.runs == 0) store_.erase_all(Kind::Variant, prefix);
  std::vector<SiteRecord> sites;
  for (const jit::UnitOutcome& u : units) {
    sites.push_back({.name = u.name, .calls = u.calls, .cycles = u.cycles, .tier = jit::tier_name(u.tier), .spec = u.spec});
    if (!u.rejected_key.empty()) store_.erase(Kind::Variant, prefix + u.rejected_key);
    if (u.key.empty() || u.loaded || !u.object) continue;
    store_.erase_all(Kind::Variant, prefix + u.name + " ");  // a unit runs one variant; older ones are never loaded again
    store_.put(Kind::Variant, prefix + u.key, std::vector<uint8_t>(u.object->begin(), u.object->end()));
  }
  record_run(m_, sites);
  m_.file_name = file_name;
  if (!cpu.empty()) m_.cpu = cpu, m_.cpuid = cpuid;
  run.run = m_.runs;
  run.model = file_name;
  run.converged = converged(m_);
  store_.put(Kind::Model, model_key(id_.hash), encode(m_));
  // The run record carries an estimate of the file's size after this commit, known before writing:
  // the live records (what a compacted log holds) plus the two 4 KiB superblock slots.
  run.state_bytes = store_.live_bytes() + 2 * 4096;
  store_.put(Kind::Run, run_key(id_.hash, run.run), encode(run));
  store_.commit();
  return run;
}

}  // namespace bf::state

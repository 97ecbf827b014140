// The payload of an exported appliance (bareflow export): the converged JIT's machine code for one
// model on one CPU, and what it was built for, appended to the bareflow-appliance executable:
//
//   [the executable's ELF bytes][payload][trailer: "BFAPPLI1", payload offset, payload size, FNV-1a]
//
// The payload is a text manifest (one field per line, then one "unit" line per object) followed by
// the objects' bytes. The appliance reads it from its own file at start, refuses any mismatch with
// the running CPU, model or engine, and links the objects with native::LoadedObject. Everything in
// it is bounds-checked: the bytes come from a file.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "engine/transformer.h"
#include "native/cpu_features.h"
#include "native/loaded_object.h"

namespace bf::native {

struct AppliancePayload {
  struct Unit {
    std::string name;    // site_name() or fusion_name(): "wq", ..., "qkv"
    std::string tier;    // tier_name() of the JIT tier that compiled it ("O3")
    std::string symbol;  // the function the object defines
    std::string spec;    // the JIT's specialization, as `bareflow state show` prints it
    std::vector<uint8_t> object;
  };
  std::string model_hash, model_description, model_file;  // engine/model.h ModelIdentity, file name
  std::string cpu;                                        // LLVM's CPU name and feature string
  CpuFeatures cpuid{};                                    // CPUID of the exporting machine
  std::string engine_source;                              // engine_source_id() of the exporter
  std::string exporter_build;                             // engine_build_id() of the exporter
  std::vector<Unit> units;
};

constexpr size_t kApplianceTrailerBytes = 32;
constexpr uint64_t kMaxAppliancePayload = 64ull << 20;

// The payload and its trailer, to append to an executable of `executable_size` bytes.
std::vector<uint8_t> encode_appliance_payload(const AppliancePayload& p, uint64_t executable_size);

// The payload appended to the file `path` (the running appliance: /proc/self/exe). Throws bf::Error
// naming the problem: no payload, a truncated or damaged one, a malformed manifest.
AppliancePayload read_appliance_payload(const std::string& path);
// The same from the file's last bytes, `tail`, which start at `tail_offset` in the file (tests and
// the fuzzer pass the whole file and 0).
AppliancePayload decode_appliance_payload(std::span<const uint8_t> tail, uint64_t tail_offset = 0);

// A model description (engine/model.h) without its per-tensor list: format and shapes.
std::string short_model_description(const std::string& d);

// Why this process must not run `p`'s code ("" when it may): a CPU lacking features the code was
// compiled for, another engine, another model.
std::string appliance_mismatch(const AppliancePayload& p, const CpuFeatures& cpu, const std::string& model_hash,
                               const std::string& model_description);

// Links every unit's object and installs its function as the transformer's kernel for that site
// or fused group. The objects must outlive `t`'s use of them.
std::vector<LoadedObject> install_appliance_code(const AppliancePayload& p, Transformer& t);

}  // namespace bf::native

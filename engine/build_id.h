// The identity of this engine build: the GNU build-id the linker wrote into the running executable
// (a hash of its contents). Stored compiled code is keyed on it, so code from another build is
// never executed.
#pragma once

#include <string>

namespace bf {

// Lowercase hex of the executable's NT_GNU_BUILD_ID note, or "" if it has none (then nothing may
// be reused across runs: callers treat "" as matching nothing).
const std::string& engine_build_id();

// "bareflow-engine-source:" and a hash of engine/ and kernels/ (scripts/source_id.py): the same in
// every executable built from these sources. An exported appliance runs its code only in an
// engine with the id of the one that verified it.
const char* engine_source_id();

}  // namespace bf

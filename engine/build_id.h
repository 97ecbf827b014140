// The identity of this engine build: the GNU build-id the linker wrote into the running executable
// (a hash of its contents). Stored compiled code is keyed on it, so code from another build is
// never executed.
#pragma once

#include <string>

namespace bf {

// Lowercase hex of the executable's NT_GNU_BUILD_ID note, or "" if it has none (then nothing may
// be reused across runs: callers treat "" as matching nothing).
const std::string& engine_build_id();

}  // namespace bf

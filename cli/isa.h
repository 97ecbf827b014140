// --isa's value: the kernels' instruction sets by name (kernels/ knows the CPU, cli/ the flags).
#pragma once

#include <string>

#include "engine/error.h"
#include "kernels/dispatch.h"

namespace bf::cli {

// "scalar", "avx2", "avx512", "avxvnni" or "auto" (best_isa()); anything else, or a known ISA this CPU lacks,
// throws a one-line bf::Error naming `flag`.
inline Isa parse_isa(const std::string& flag, const std::string& value) {
  if (value == "auto") return best_isa();
  for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::AvxVnni}) {
    if (value != isa_name(isa)) continue;
    if (!isa_supported(isa))
      fail(flag, std::string("this CPU (or this executable's build) does not support ") + value + " (best supported: " + isa_name(best_isa()) +
                     ")");
    return isa;
  }
  fail(flag, "'" + value + "' is not one of scalar, avx2, avx512, avxvnni, auto");
}

}  // namespace bf::cli

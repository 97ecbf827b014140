// cli/isa.h: --isa's names map to the kernels' instruction sets; anything else is one clear error.
#include <gtest/gtest.h>

#include <string>

#include "cli/isa.h"

namespace bf::cli {
namespace {

TEST(IsaFlag, AutoPicksTheBestAndNamesParse) {
  EXPECT_EQ(parse_isa("--isa", "auto"), best_isa());
  EXPECT_EQ(parse_isa("--isa", "scalar"), Isa::Scalar);
}

TEST(IsaFlag, UnknownOrUnsupportedIsaIsOneClearError) {
  EXPECT_THROW(parse_isa("--isa", "sse9"), Error);
  for (Isa isa : {Isa::Avx2, Isa::Avx512, Isa::AvxVnni}) {
    if (isa_supported(isa)) continue;
    try {
      parse_isa("--isa", isa_name(isa));
      FAIL() << "accepted unsupported " << isa_name(isa);
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("does not support"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace bf::cli

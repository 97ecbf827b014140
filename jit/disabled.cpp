// The JIT's flags in a build without LLVM (BAREFLOW_JIT=OFF, e.g. the sanitizer build).
#include "jit/cli.h"

namespace bf::jit {

const char kCliUsage[] = "  --jit=off                   the only JIT mode of this build (built without LLVM)\n";

struct CliOptions {};

Cli::Cli() = default;
Cli::~Cli() = default;

bool Cli::parse(const std::string& flag, cli::Args& a) {
  if (flag == "--jit=off") return true;
  if (flag.rfind("--jit", 0) == 0 || flag == "--trace-jit")
    // Names the flag without its value: bench --jit passes --jit=O0 on the user's behalf.
    fail(flag.substr(0, flag.find('=')), "this bareflow was built without LLVM (BAREFLOW_JIT=OFF)");
  return false;
}

std::unique_ptr<Session> Cli::attach(Transformer&, prof::SiteProfiler*) const { return nullptr; }

double o3_vs_interp_speedup(const Matrix&) { return 0; }

}  // namespace bf::jit

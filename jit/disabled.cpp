// The JIT in a build without LLVM (BAREFLOW_JIT=OFF, e.g. the sanitizer build): nothing to attach;
// cli/jit_flags.cpp rejects every JIT flag but --jit=off.
#include "jit/attach.h"

namespace bf::jit {

bool available() { return false; }

std::unique_ptr<Session> attach(Transformer&, const Options&, prof::SiteProfiler*) { return nullptr; }

double o3_vs_interp_speedup(const Matrix&) { return 0; }

}  // namespace bf::jit

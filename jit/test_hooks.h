// Tests only: ways to make the JIT produce bad code on purpose, to prove that verification rejects
// it. Production code never passes hooks (Runtime::create's default is none).
#pragma once

#include "engine/sites.h"
#include "jit/options.h"

namespace bf::jit {

class TestHooks {
 public:
  // True: the variant of this site (or group) at this tier is compiled with a wrong column count.
  virtual bool miscompile_site(Site s, Tier t) const { return false; }
  virtual bool miscompile_fused(Fusion f, Tier t) const { return false; }

 protected:
  ~TestHooks() = default;
};

}  // namespace bf::jit

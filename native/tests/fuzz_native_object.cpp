// libFuzzer target: any bytes as a relocatable object, and as an appliance's tail (its payload and
// trailer). Loading either refuses with a bf::Error or yields code pages that are never writable;
// nothing is executed (fuzzed code would do anything).
#include <cstdint>
#include <cstdlib>

#include "engine/error.h"
#include "native/appliance.h"
#include "native/loaded_object.h"

#include <vector>

namespace {
int external;  // what the seeds (native/tests/sample_object.c) need beyond the engine's table
const std::vector<bf::native::Symbol> kExternals = [] {
  std::vector<bf::native::Symbol> v(bf::native::runtime_symbols().begin(), bf::native::runtime_symbols().end());
  v.push_back({"bf_sample_external", &external});
  return v;
}();
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    bf::native::LoadedObject o = bf::native::LoadedObject::load({data, size}, kExternals);
    if (o.mapped_bytes() == 0) std::abort();
    (void)o.find("bf_sample_dot");
  } catch (const bf::Error&) {
  }
  try {
    (void)bf::native::decode_appliance_payload({data, size});
  } catch (const bf::Error&) {
  }
  return 0;
}

#include "cli/jit_flags.h"

#include <sstream>

#include "jit/attach.h"

namespace bf::cli {

namespace {

const char kUsage[] =
    "  --jit=MODE                  off (default) | interp | tiered | O0 | O1 | O2 | O3: matvec kernels\n"
    "                              run interpreted, tier up, or compiled at one level, by LLVM for this\n"
    "                              model's shapes and this CPU; every variant is verified first\n"
    "  --jit-start=interp|aot      tiered: the bottom tier (default interp)\n"
    "  --jit-thresholds A,B,C,D    tiered: work units (4096 multiply-adds) before O0,O1,O2,O3\n"
    "                              (default 10,100,1000,10000)\n"
    "  --jit-fuse=on|off           once wq, wk, wv (or w1, w3) all run at the top tier, compile them\n"
    "                              as one fused kernel (w1/w3 with SwiGLU): one pass (default on)\n"
    "  --jit-sync                  compile on the forward thread instead of a background thread\n"
    "  --jit-reassoc               let compiled tiers reorder float sums (vectorized f32 dot products;\n"
    "                              verified within 1e-3 of the largest output instead of bit for bit)\n"
    "  --trace-jit                 log each promotion and a summary at exit (stderr)\n"
    "  --report-code               at exit: the tiers each site ran at, LLVM's share of the executable\n"
    "                              and the bytes of native code the JIT produced (stderr)\n";

const char kUsageWithoutLlvm[] = "  --jit=off                   the only JIT mode of this build (built without LLVM)\n";

// "--flag=value" or "--flag value".
bool match(const std::string& flag, const char* name, Args& a, std::string* value) {
  const std::string n = name;
  if (flag == n) {
    *value = a.value(flag);
    return true;
  }
  if (flag.size() > n.size() && flag.compare(0, n.size(), n) == 0 && flag[n.size()] == '=') {
    *value = flag.substr(n.size() + 1);
    return true;
  }
  return false;
}

}  // namespace

const char* jit_usage() { return jit::available() ? kUsage : kUsageWithoutLlvm; }

bool parse_jit_flag(const std::string& flag, Args& a, jit::Options* o) {
  using jit::Policy;
  using jit::Tier;
  if (!jit::available()) {
    if (flag == "--jit=off") return true;
    if (flag.rfind("--jit", 0) == 0 || flag == "--trace-jit")
      // Names the flag without its value: bench --jit passes --jit=O0 on the user's behalf.
      fail(flag.substr(0, flag.find('=')), "this bareflow was built without LLVM (BAREFLOW_JIT=OFF)");
    return false;
  }
  std::string v;
  if (match(flag, "--jit", a, &v)) {
    if (v == "off") {
      o->policy = Policy::Off;
    } else if (v == "interp") {
      o->policy = Policy::Interp;
    } else if (v == "tiered") {
      o->policy = Policy::Tiered;
    } else if (v.size() == 2 && v[0] == 'O' && v[1] >= '0' && v[1] <= '3') {
      o->policy = Policy::Fixed;
      o->fixed = Tier(size_t(Tier::O0) + size_t(v[1] - '0'));
    } else {
      fail(flag, "'" + v + "' is not off, interp, tiered or O0..O3");
    }
  } else if (match(flag, "--jit-start", a, &v)) {
    if (v != "interp" && v != "aot") fail(flag, "'" + v + "' is not interp or aot");
    o->start_interp = v == "interp";
  } else if (match(flag, "--jit-thresholds", a, &v)) {
    std::istringstream in(v);
    std::string part;
    size_t i = 0;
    uint64_t prev = 0;
    while (std::getline(in, part, ',')) {
      if (i == 4) fail(flag, "expects 4 comma-separated numbers");
      o->thresholds[i] = parse_u64(flag, part);
      if (o->thresholds[i] < prev) fail(flag, "thresholds must not decrease");
      prev = o->thresholds[i++];
    }
    if (i != 4) fail(flag, "expects 4 comma-separated numbers");
  } else if (match(flag, "--jit-fuse", a, &v)) {
    if (v != "on" && v != "off") fail(flag, "'" + v + "' is not on or off");
    o->fuse = v == "on";
  } else if (flag == "--jit-reassoc") {
    o->reassoc = true;
  } else if (flag == "--jit-sync") {
    o->sync = true;
  } else if (flag == "--report-code") {
    o->report_code = true;
  } else if (flag == "--trace-jit") {
    o->trace = true;
  } else {
    return false;
  }
  return true;
}

}  // namespace bf::cli

// bareflow-appliance: what bareflow export writes. The engine and its AOT kernels, no LLVM, no
// store, no profiler; the JIT's converged code for one model on one CPU rides in a payload
// appended to this file (native/appliance.h). Without a payload (the template itself) it refuses
// to run. It refuses, with one line and exit 2, a CPU lacking a feature its code was compiled
// for, another model, and another engine build: that code is never executed.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "cli/args.h"
#include "cli/run.h"
#include "engine/build_id.h"
#include "engine/error.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "engine/tokenizer.h"
#include "engine/transformer.h"
#include "native/appliance.h"
#include "native/cpu_features.h"

namespace {

using namespace bf;

const char kUsage[] =
    "usage: APPLIANCE generate [MODEL] [options]   (also: APPLIANCE MODEL [options])\n"
    "       APPLIANCE --version                      what it was exported for\n";
const char kUsageEnd[] =
    "  The JIT, store and profiler flags of bareflow generate are accepted and ignored: the code is\n"
    "  already compiled.\n";

// bareflow generate's flags that have no meaning here, with whether each takes a value.
bool ignored_flag(const std::string& f, cli::Args& a) {
  for (const char* v : {"--jit", "--jit-start", "--jit-thresholds", "--jit-fuse", "--state", "--state-max", "--profile-json"}) {
    if (f == v) {
      a.value(f);
      return true;
    }
    if (f.rfind(std::string(v) + "=", 0) == 0) return true;
  }
  for (const char* v : {"--jit-reassoc", "--jit-sync", "--report-code", "--trace-jit", "--no-state", "--profile"})
    if (f == v) return true;
  return false;
}

int version(const native::AppliancePayload& p) {
  std::printf("bareflow appliance\nmodel: %s (%s), %s\ncpu: %s\ncpuid: %s\nengine: %s, exported by bareflow build %s\n",
              p.model_file.c_str(), p.model_hash.c_str(), native::short_model_description(p.model_description).c_str(),
              p.cpu.c_str(),
              native::format_cpu_features(p.cpuid).c_str(), p.engine_source.c_str(), p.exporter_build.c_str());
  for (const auto& u : p.units)
    std::printf("unit %s %s %zu bytes: %s\n", u.name.c_str(), u.tier.c_str(), u.object.size(), u.spec.c_str());
  return 0;
}

int run(int argc, char** argv) {
  const cli::Clock::time_point run_start = cli::Clock::now();
  int first = 1;
  if (argc > 1 && std::strcmp(argv[1], "generate") == 0) first = 2;
  if (argc > 1 && (std::strcmp(argv[1], "-h") == 0 || std::strcmp(argv[1], "--help") == 0 ||
                   (first == 2 && argc > 2 && (std::strcmp(argv[2], "-h") == 0 || std::strcmp(argv[2], "--help") == 0)))) {
    std::fputs(kUsage, stdout);
    std::fputs(cli::kRunUsage, stdout);
    std::fputs(kUsageEnd, stdout);
    return 0;
  }
  const native::AppliancePayload payload = native::read_appliance_payload(cli::self_executable("appliance"));
  if (argc > 1 && std::strcmp(argv[1], "--version") == 0) return version(payload);

  cli::RunFlags r;
  bool noted = false;
  cli::Args a{argc, argv, first};
  while (!a.done()) {
    const std::string f = a.next();
    if (cli::parse_run_flag(f, a, r)) continue;
    if (!ignored_flag(f, a)) fail(f, "unknown flag (see --help)");
    if (!noted) std::fprintf(stderr, "bareflow: note: %s is ignored: the appliance's code is already compiled\n", f.c_str());
    noted = true;
  }
  // No model given: the one baked into its image (bareflow export --image --bake-weights), in
  // DIR/weights beside it on a host, a boot module "/NAME" in the unikernel.
  const std::string& baked = payload.model_file;
  if (r.model_path.empty() && !baked.empty() && baked.find('/') == std::string::npos && baked != "." && baked != "..") {
    const std::string self = cli::self_executable("appliance");
    for (const std::string& c : {self.substr(0, self.rfind('/') + 1) + "weights/" + baked, "/" + baked})
      if (cli::is_file(c)) {
        r.model_path = c;
        break;
      }
  }
  cli::finish_run_flags(r);

  const std::unique_ptr<Model> model = cli::load_run_model(r);
  const ModelIdentity id = model_identity(*model);
  if (const std::string why = native::appliance_mismatch(payload, native::host_cpu_features(), id.hash, id.description);
      !why.empty())
    fail("appliance", "refusing to run: " + why);
  const Config& c = model->config;
  const std::string tokenizer_path = cli::tokenizer_file(*model, r.tokenizer_path);
  const Tokenizer tokenizer = tokenizer_path.empty() ? Tokenizer::from_vocab(*model->vocab)
                                                     : Tokenizer::from_file(tokenizer_path, c.vocab_size);
  const int steps = cli::clamp_steps(r.steps, c);
  const std::vector<int> tokens = tokenizer.encode(r.prompt, true, false, size_t(c.seq_len));
  Transformer transformer(*model, kernels_for(r.isa), r.threads, steps);
  const std::vector<native::LoadedObject> code = native::install_appliance_code(payload, transformer);
  uint64_t code_bytes = 0;
  for (const native::LoadedObject& o : code) code_bytes += o.code_bytes();
  std::fprintf(stderr, "native code: %zu units installed, %llu bytes\n", code.size(), (unsigned long long)code_bytes);
  Sampler sampler(c.vocab_size, r.temperature, r.topp, r.seed);
  cli::generate(transformer, *model, tokenizer, sampler, tokens, steps, r.prefill, run_start);
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return bf::cli::report_errors(run, argc, argv); }

// bareflow export: the converged JIT's code for one model on this CPU, appended to the LLVM-free
// bareflow-appliance executable (native/appliance.h, docs/SHRINK.md).
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/jit_flags.h"
#include "cli/run.h"
#include "engine/build_id.h"
#include "engine/mapped_file.h"
#include "engine/model.h"
#include "engine/transformer.h"
#include "jit/attach.h"
#include "kernel/host/launch.h"
#include "native/appliance.h"
#include "native/cpu_features.h"
#include "state/model_store.h"
#include "state/records.h"
#include "state/store.h"

namespace bf::cli {
namespace {

const char kUsage[] =
    "usage: bareflow export [MODEL] --state FILE (-o OUT | --image DIR [--bake-weights [-z TOK]])\n"
    "                       [--force] [JIT flags] [-- GENERATE FLAGS...]\n"
    "  Writes OUT: a static executable without LLVM holding the engine and the JIT's converged code\n"
    "  for MODEL from the store FILE, for the CPU that code was compiled for (the machine that ran\n"
    "  the model: this host, or the guest of bareflow boot --disk FILE). Run it as\n"
    "  OUT generate MODEL [generate's flags].\n"
    "  MODEL, -m, --model PATH   the model whose state to export (default as for generate)\n"
    "  --state FILE              the store, or a boot disk holding one (default: as for generate)\n"
    "  -o, --output OUT          the executable to write (replaced atomically)\n"
    "  --image DIR               an appliance image: DIR/appliance (the executable), the unikernel,\n"
    "                            DIR/bareflow.iso; boot it with bareflow boot --image DIR\n"
    "  --bake-weights            put MODEL (and the tokenizer, -z TOK) inside the image\n"
    "  -- GENERATE FLAGS...      what the image runs when booted without arguments: generate with\n"
    "                            these flags (default: generate on the baked weights, else --version)\n"
    "  --force                   export a state that has not converged, and code compiled now for\n"
    "                            units the store lacks\n"
    "  JIT flags                 those the runs used (--jit O2, --jit-reassoc, ...; default tiered):\n"
    "                            they decide which code is taken, fused groups included\n"
    "  The appliance template is bareflow-appliance-ISA-FORMAT beside this executable (only the\n"
    "  kernels the target CPU runs and the model's loader), else bareflow-appliance\n"
    "  ($BAREFLOW_APPLIANCE names another).\n";

// The LLVM-free executable the payload is appended to, from this build: the pruned template with
// only the SIMD family the target CPU runs and the model's format (bareflow-appliance-ISA-FORMAT),
// else the whole bareflow-appliance.
std::string appliance_template(Isa isa, ModelFormat format) {
  if (const char* env = std::getenv("BAREFLOW_APPLIANCE"); env && *env) return env;
  const std::string self = self_executable("export (set BAREFLOW_APPLIANCE)");
  const std::string dir = self.substr(0, self.rfind('/') + 1);
  const std::string pruned =
      dir + "bareflow-appliance-" + isa_name(isa) + (format == ModelFormat::Gguf ? "-gguf" : "-llama2c");
  return is_file(pruned) ? pruned : dir + "bareflow-appliance";
}

bool same_file(const std::string& a, const std::string& b) {
  struct stat sa, sb;
  return stat(a.c_str(), &sa) == 0 && stat(b.c_str(), &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

// Writes `bytes` to `path` crash-safely: a temporary file beside it, fsync, chmod 755, rename,
// then the directory's fsync. An existing `path` is whole until the rename replaces it.
void write_executable(const char* flag, const std::string& path, const MappedFile& head, const std::vector<uint8_t>& tail) {
  const std::string tmp = path + ".tmp." + std::to_string(getpid());
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
  if (fd < 0) fail(flag, path + ": " + std::strerror(errno));
  auto write_all = [&](const char* p, size_t n) {
    while (n > 0) {
      const ssize_t w = write(fd, p, n);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return false;
      p += w;
      n -= size_t(w);
    }
    return true;
  };
  const bool ok = write_all(reinterpret_cast<const char*>(head.data()), head.size()) &&
                  write_all(reinterpret_cast<const char*>(tail.data()), tail.size()) && fchmod(fd, 0755) == 0 &&
                  fsync(fd) == 0;
  const int e = errno;
  if (close(fd) != 0 || !ok || rename(tmp.c_str(), path.c_str()) != 0) {
    const int e2 = ok ? errno : e;
    unlink(tmp.c_str());
    fail(flag, path + ": " + std::strerror(e2));
  }
  const std::string dir = path.find('/') == std::string::npos ? "." : path.substr(0, path.rfind('/') + 1);
  const int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
}

}  // namespace

int cmd_export(int argc, char** argv) {
  std::string model_path, state_path = state::default_state_path(), out, image, tokenizer_path;
  std::vector<std::string> image_args;
  bool force = false, bake = false;
  jit::Options jo{.policy = jit::Policy::Tiered, .sync = true};
  Args a{argc, argv};
  while (!a.done()) {
    const std::string f = a.next();
    if (f == "-h" || f == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (f == "-m" || f == "--model") {
      model_path = a.value(f);
    } else if (f == "--state") {
      state_path = a.value(f);
    } else if (f == "-o" || f == "--output") {
      out = a.value(f);
    } else if (f == "--image") {
      image = a.value(f);
    } else if (f == "--bake-weights") {
      bake = true;
    } else if (f == "-z" || f == "--tokenizer") {
      tokenizer_path = a.value(f);
    } else if (f == "--") {
      image_args.push_back("generate");
      while (!a.done()) image_args.push_back(a.next());
    } else if (f == "--force") {
      force = true;
    } else if (parse_jit_flag(f, a, &jo)) {
      continue;
    } else if (!f.empty() && f[0] != '-' && model_path.empty()) {
      model_path = f;
    } else {
      fail(f, "unknown flag or argument (see bareflow export --help)");
    }
  }
  if (jo.policy == jit::Policy::Off || jo.policy == jit::Policy::Interp)
    fail("--jit", "export takes compiled code: give the JIT flags the runs used (--jit tiered, O2, ...)");
  jo.sync = true;
  if (out.empty() && image.empty()) fail("export", "no output given: -o OUT or --image DIR");
  if (image.empty() && (bake || !tokenizer_path.empty() || !image_args.empty()))
    fail(bake ? "--bake-weights" : !tokenizer_path.empty() ? "-z" : "--", "belongs to --image DIR");
  if (!tokenizer_path.empty() && !bake) fail("-z", "only --bake-weights takes a tokenizer");
  if (!image.empty() && is_file(image)) fail("--image", image + " is a file, not a directory");
  if (model_path.empty()) model_path = find_default_model();
  if (state_path.empty()) fail("--state", "no store given and neither BAREFLOW_STATE, XDG_CACHE_HOME nor HOME is set");
  if (!is_file(state_path)) fail("--state", state_path + ": no such store (run bareflow generate --state FILE first)");
  if (!jit::available()) fail("export", "this bareflow was built without LLVM: it has no JIT to export from");
  for (const std::string& in : std::vector<std::string>{model_path, state_path, tokenizer_path})
    for (const std::string& o : {out, image.empty() ? std::string() : image + "/appliance"})
      if (!o.empty() && !in.empty() && same_file(o, in)) fail(o == out ? "-o" : "--image", o + " is " + in + "; it would be overwritten");
  if (bake && !boot::usable_module_name(file_name_of(model_path)))
    fail("--bake-weights", file_name_of(model_path) + ": a baked file's name must be letters, digits, '.', '_' or '-'");

  // The store: damaged or unconverged is refused (its code may be missing or still moving).
  state::Options so;
  so.read_only = true;
  state::Store store = state::Store::open(state_path, so);
  if (!store.problems().empty())
    fail(state_path, "the store is damaged (" + store.problems()[0] + "); run bareflow generate on it to repair it, then export");
  // Repacked as generate repacks by default: the layout is part of the identity the code is for.
  const std::unique_ptr<Model> model = load_model(model_path);
  repack_weights(*model);
  state::ModelStore model_store(store, state::model_identity(*model), stderr);
  const state::ModelState& m = model_store.model();
  if (m.runs == 0) fail(state_path, "holds no runs of " + model_path + " (run bareflow generate on it first)");
  if (!state::converged(m) && !force)
    fail(state_path, "the state of " + file_name_of(model_path) + " has not converged (" +
                         (m.moving.empty() ? std::to_string(m.stable_runs) + " of " +
                                                 std::to_string(state::kDefaultConvergenceRuns) + " stable runs"
                                           : m.moving) +
                         "); run bareflow generate again, or export --force");

  // The stored code, installed and verified by the JIT as a warm start does: a few forward steps,
  // synchronous, so that the sites' variants and then the fused groups' are in place. Few enough
  // that no site does more work than any real run did (a converged site is not promoted here).
  // The machine the stored code is for. Another one (the guest that ran the model) is taken up as
  // it is, compiled for, and verified here: so this host must have every feature it has.
  native::CpuFeatures cpuid = native::host_cpu_features();
  if (!m.cpu.empty()) {
    const size_t sp = m.cpu.find(' ');
    jo.target_cpu = m.cpu.substr(0, sp);
    jo.target_features = sp == std::string::npos ? "" : m.cpu.substr(sp + 1);
    native::CpuFeatures stored;
    try {
      stored = native::parse_cpu_features(m.cpuid);
    } catch (const Error&) {
      fail(state_path, "the CPU record of " + file_name_of(model_path) + " is damaged; run bareflow generate on it again");
    }
    if (const std::string lacks = native::missing_features(stored, cpuid); !lacks.empty())
      fail(state_path, "its code for " + file_name_of(model_path) + " is for a " + jo.target_cpu +
                           " with features this host lacks (" + lacks + "), so it cannot be verified here; export on that machine");
    cpuid = stored;
  }
  const std::string templ = appliance_template(native::best_isa_of(cpuid), model->format);
  for (const std::string& o : {out, image.empty() ? std::string() : image + "/appliance"})
    if (!o.empty() && same_file(o, templ)) fail(o == out ? "-o" : "--image", o + " is " + templ + "; it would be overwritten");
  const MappedFile templ_bytes = MappedFile::open(templ);
  if (std::string_view(reinterpret_cast<const char*>(templ_bytes.data()), templ_bytes.size()).find(engine_source_id()) ==
      std::string_view::npos)
    fail(templ, "is not the appliance of this bareflow's engine (another build); rebuild both (make build)");
  const int steps = std::min(4, model->config.seq_len);
  Transformer t(*model, kernels_for(best_isa()), 1, steps);
  jo.cache = &model_store;
  const std::unique_ptr<jit::Session> session = jit::attach(t, jo);
  if (!session) fail("export", "the JIT cannot serve this host");
  for (int pos = 0; pos < steps; pos++) {
    t.forward(1, pos);
    session->drain();
  }
  native::AppliancePayload p;
  std::string compiled_now;
  for (const jit::UnitOutcome& u : session->outcomes()) {
    if (u.key.empty() || !u.object) continue;  // AOT or interpreted: the appliance runs its AOT kernel
    if (!u.loaded) compiled_now += (compiled_now.empty() ? "" : ", ") + u.name;
    p.units.push_back({u.name, jit::tier_name(u.tier), u.symbol, u.spec,
                       std::vector<uint8_t>(u.object->begin(), u.object->end())});
  }
  if (!compiled_now.empty() && !force)
    fail(state_path, "has no verified code for " + compiled_now + " of " + file_name_of(model_path) +
                         " usable by this bareflow build for " + (jo.target_cpu.empty() ? std::string("this CPU") : jo.target_cpu) +
                         " (it was compiled now: the store's came from another build, CPU or JIT flags);"
                         " run bareflow generate again, or export --force");
  if (p.units.empty()) fail(state_path, "holds no compiled code for " + file_name_of(model_path));
  const ModelIdentity& id = model_store.identity();
  p.model_hash = id.hash;
  p.model_description = id.description;
  p.model_file = file_name_of(model_path);
  p.cpu = session->target();
  p.cpuid = cpuid;
  p.engine_source = engine_source_id();
  p.exporter_build = engine_build_id();
  const std::vector<uint8_t> tail = native::encode_appliance_payload(p, templ_bytes.size());
  uint64_t code = 0;
  for (const auto& u : p.units) code += u.object.size();
  const std::string cpu_name = p.cpu.substr(0, p.cpu.find(' '));
  if (!out.empty()) {
    write_executable("-o", out, templ_bytes, tail);
    std::fprintf(stderr, "bareflow: exported %zu units (%llu bytes of objects) of %s for %s: %s, %zu bytes (from %s)\n",
                 p.units.size(), (unsigned long long)code, p.model_file.c_str(), cpu_name.c_str(), out.c_str(),
                 templ_bytes.size() + tail.size(), file_name_of(templ).c_str());
  }
  if (!image.empty()) {
    // A directory that holds something else is not ours to write into.
    if (DIR* d = opendir(image.c_str())) {
      bool other = false, ours = is_file(image + "/appliance");
      while (const dirent* e = readdir(d)) other |= std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0;
      closedir(d);
      if (other && !ours) fail("--image", image + " holds other files and no appliance; give an empty or new directory");
    } else {
      state::make_parent_dirs(image + "/appliance");
    }
    std::vector<boot::ImageFile> weights;
    if (bake) {
      weights.push_back({model_path, file_name_of(model_path)});
      // Named as the appliance looks for a tokenizer beside its model (cli::tokenizer_file).
      // A model without its own vocabulary (llama2.c) needs one baked beside it: -z, else the one
      // generate would use (beside the model; a line naming it when there is none).
      const std::string tok = model->vocab ? tokenizer_path : tokenizer_file(*model, tokenizer_path);
      if (!tok.empty()) weights.push_back({tok, model->config.vocab_size == 512 ? "tok512.bin" : "tokenizer.bin"});
    }
    if (image_args.empty()) image_args = {bake ? "generate" : "--version"};
    write_executable("--image", image + "/appliance", templ_bytes, tail);
    if (const std::string err = boot::write_image(image, weights, image_args); !err.empty()) fail("--image", err);
    uint64_t bytes = 0;
    for (const char* f : {"appliance", "bareflow-kernel.bin"}) {
      off_t n = 0;
      if (is_file(image + "/" + f, &n)) bytes += uint64_t(n);
    }
    std::fprintf(stderr,
                 "bareflow: exported %zu units (%llu bytes of objects) of %s for %s: image %s (kernel + appliance %llu bytes%s)\n",
                 p.units.size(), (unsigned long long)code, p.model_file.c_str(), cpu_name.c_str(), image.c_str(),
                 (unsigned long long)bytes, bake ? ", weights baked" : "");
  }
  return 0;
}

}  // namespace bf::cli

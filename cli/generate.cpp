// bareflow generate: llama2.c run.c's generate loop and flags.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "bench/temp_files.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/isa.h"
#include "cli/jit_flags.h"
#include "cli/run.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "engine/tokenizer.h"
#include "engine/threadpool.h"
#include "engine/transformer.h"
#include "kernels/dispatch.h"
#include "jit/attach.h"
#include "native/cpu_features.h"
#include "profile/site_profiler.h"
#include "state/model_store.h"
#include "state/records.h"
#include "state/store.h"
#include "state/weights_cache.h"

namespace bf::cli {
namespace {

const char kUsage[] = "usage: bareflow generate [MODEL] [options]\n";
const char kUsageMore[] =
  "  --profile                   print per-call-site cycle counters at exit (stderr)\n"
    "  --profile-json FILE         write them as JSON\n"
    "  --state FILE                the persistent store: profiles and compiled code kept across runs\n"
    "                              (default: $BAREFLOW_STATE, else $XDG_CACHE_HOME/bareflow/state.bfs,\n"
    "                              else ~/.cache/bareflow/state.bfs); with one, --jit=tiered is the default\n"
    "  --no-state                  neither read nor write the store (the JIT then defaults to off)\n"
    "  --state-max SIZE            bound the store (bytes, or with K, M, G; default 64M): oldest records go\n";
const char kUsageEnd[] =
    "  -h, --help\n"
    "Text streams to stdout; prefill and decode tok/s go to stderr.\n";

// An output file named by a flag, opened for writing before any input is read, so that a directory,
// an unwritable path or an input file is refused at once rather than after the whole run. An
// existing file keeps its bytes until write() (opened without O_TRUNC); one this run created is
// removed if the run fails or is interrupted (bench::TempFile).
class OutputFile {
 public:
  OutputFile(std::string flag, std::string path) : flag_(std::move(flag)), path_(std::move(path)) {
    // O_NONBLOCK: a FIFO without a reader is refused (ENXIO) instead of blocking.
    fd_ = open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NONBLOCK, 0644);
    if (fd_ >= 0) {
      created_ = std::make_unique<bench::TempFile>(path_);
    } else if (errno == EEXIST) {
      fd_ = open(path_.c_str(), O_WRONLY | O_CLOEXEC | O_NONBLOCK);
    }
    if (fd_ < 0) fail(flag_, path_ + ": " + std::strerror(errno));
  }
  ~OutputFile() {
    if (fd_ >= 0) close(fd_);
  }
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;

  // Refuses the file if it is `input` (the same inode: another name or a hard link counts).
  void refuse_input(const std::string& input, const char* what) const {
    struct stat out, in;
    if (input.empty() || fstat(fd_, &out) != 0 || stat(input.c_str(), &in) != 0) return;
    if (out.st_dev == in.st_dev && out.st_ino == in.st_ino)
      fail(flag_, path_ + " is the " + what + " (" + input + "); it would be overwritten");
  }

  // Replaces the file's contents with what `body` prints.
  void write(const std::function<void(FILE*)>& body) {
    struct stat st;
    if (fstat(fd_, &st) == 0 && S_ISREG(st.st_mode) && ftruncate(fd_, 0) != 0)
      fail(flag_, path_ + ": " + std::strerror(errno));
    const int flags = fcntl(fd_, F_GETFL);
    if (flags >= 0) fcntl(fd_, F_SETFL, flags & ~O_NONBLOCK);
    FILE* f = fdopen(fd_, "w");
    if (!f) fail(flag_, path_ + ": " + std::strerror(errno));
    fd_ = -1;  // the FILE owns it now
    body(f);
    const bool ok = !std::ferror(f);
    if (std::fclose(f) != 0 || !ok) fail(flag_, path_ + ": write failed");
    if (created_) created_->keep();
  }

 private:
  std::string flag_, path_;
  int fd_ = -1;
  std::unique_ptr<bench::TempFile> created_;
};

// The flags, as parsed: run.c's, then the profiler's, the store's and the JIT's.
struct Flags {
  RunFlags run;
  bool profile = false;
  std::string profile_json;
  jit::Options jit;
  bool jit_given = false;  // a --jit=MODE flag: the store does not choose the policy then
  std::string state_path = state::default_state_path();
  // --state or $BAREFLOW_STATE: a store that cannot be used is an error. The default location only
  // gets a note (a read-only home, the unikernel's "/") and the run goes on without a store.
  bool state_named = std::getenv("BAREFLOW_STATE") && *std::getenv("BAREFLOW_STATE");
  bool use_state = true;
  uint64_t state_max = state::Options{}.max_bytes;
};

// "64M", "1G", "500000": bytes.
uint64_t parse_size(const std::string& flag, std::string v) {
  uint64_t mult = 1;
  if (!v.empty()) {
    const char u = v.back();
    if (u == 'K' || u == 'k') mult = 1ull << 10;
    if (u == 'M' || u == 'm') mult = 1ull << 20;
    if (u == 'G' || u == 'g') mult = 1ull << 30;
    if (mult != 1) v.pop_back();
  }
  const uint64_t n = parse_u64(flag, v);
  if (n == 0 || n > (1ull << 40) / mult) fail(flag, "'" + v + "' is not a size between 1 byte and 1T");
  return n * mult;
}

// False when --help was printed.
bool parse_flags(int argc, char** argv, Flags& g) {
  Args a{argc, argv};
  while (!a.done()) {
    const std::string f = a.next();
    if (f == "-h" || f == "--help") {
      std::fputs(kUsage, stdout);
      std::fputs(kRunUsage, stdout);
      std::fputs(kUsageMore, stdout);
      std::fputs(jit_usage(), stdout);
      std::fputs(kUsageEnd, stdout);
      return false;
    } else if (parse_run_flag(f, a, g.run)) {
    } else if (f == "--profile") {
      g.profile = true;
    } else if (f == "--profile-json") {
      g.profile_json = a.value(f);
    } else if (f == "--state") {
      g.state_path = a.value(f);
      if (g.state_path.empty()) fail(f, "needs a file name");
      g.use_state = g.state_named = true;
    } else if (f == "--no-state") {
      g.use_state = false;
    } else if (f == "--state-max") {
      g.state_max = parse_size(f, a.value(f));
    } else if (parse_jit_flag(f, a, &g.jit)) {
      if (f == "--jit" || f.rfind("--jit=", 0) == 0) g.jit_given = true;
    } else {
      fail(f, "unknown flag (see bareflow generate --help)");
    }
  }
  finish_run_flags(g.run);
  return true;
}

}  // namespace

std::unique_ptr<state::Store> open_store(const std::string& path, bool named, uint64_t max_bytes) {
  if (path.empty()) return nullptr;
  state::Options o{.max_bytes = max_bytes, .fault = state::fault_plan_from_env()};
  std::unique_ptr<state::Store> s;
  try {
    state::make_parent_dirs(path);
    s = std::make_unique<state::Store>(state::Store::open(path, o));
  } catch (const Error& e) {
    if (named) throw;
    std::fprintf(stderr, "bareflow: note: running without a store: %s (--state FILE names another)\n",
                 e.message.c_str());
    return nullptr;
  }
  for (const std::string& p : s->problems()) std::fprintf(stderr, "bareflow: state: %s\n", p.c_str());
  return s;
}

int cmd_generate(int argc, char** argv) {
  const Clock::time_point run_start = Clock::now();
  Flags g;
  if (!parse_flags(argc, argv, g)) return 0;
  std::unique_ptr<OutputFile> profile_json;
  if (!g.profile_json.empty()) {
    profile_json = std::make_unique<OutputFile>("--profile-json", g.profile_json);
    profile_json->refuse_input(g.run.model_path, "model");
    profile_json->refuse_input(g.run.tokenizer_path, "tokenizer");
  }

  const std::unique_ptr<Model> model = load_model(g.run.model_path);
  const Config& c = model->config;
  const std::string tokenizer_path = tokenizer_file(*model, g.run.tokenizer_path);
  if (profile_json) profile_json->refuse_input(tokenizer_path, "tokenizer");
  const Tokenizer tokenizer = tokenizer_path.empty() ? Tokenizer::from_vocab(*model->vocab)
                                                     : Tokenizer::from_file(tokenizer_path, c.vocab_size);
  const int steps = clamp_steps(g.run.steps, c);
  const std::vector<int> tokens = tokenizer.encode(g.run.prompt, true, false, size_t(c.seq_len));

  // Every input checked, then the store (nothing is created for a run that cannot start), then the
  // weights repacked through the copy kept beside it.
  const std::unique_ptr<state::Store> store = g.use_state ? open_store(g.state_path, g.state_named, g.state_max) : nullptr;
  if (g.run.repack) {
    const std::string cache = store ? state::weights_cache_path(store->path(), g.run.model_path) : "";
    const state::WeightsCache w = state::repack_with_cache(*model, g.run.model_path, cache, stderr);
    if (g.jit.trace && !cache.empty())
      std::fprintf(stderr, "weights: %s: %s\n", printable(cache).c_str(), state::weights_cache_name(w));
  }

  Transformer transformer(*model, kernels_for(g.run.isa), g.run.threads, steps);
  Sampler sampler(c.vocab_size, g.run.temperature, g.run.topp, g.run.seed);
  std::unique_ptr<prof::SiteProfiler> profiler;
  if (g.profile || profile_json) {
    profiler = std::make_unique<prof::SiteProfiler>();
    transformer.set_matvec_observer(profiler.get());
  }
  std::unique_ptr<state::ModelStore> model_store;
  if (store) {
    model_store = std::make_unique<state::ModelStore>(*store, state::model_identity(*model), stderr);
    // The store makes the JIT pay: from the second run on, nothing is compiled.
    if (!g.jit_given && jit::available()) g.jit.policy = jit::Policy::Tiered;
    g.jit.cache = model_store.get();
  }
  const std::unique_ptr<jit::Session> jit_session = jit::attach(transformer, g.jit, profiler.get());
  const Clock::time_point generate_start = Clock::now();
  const Timings timings = generate(transformer, *model, tokenizer, sampler, tokens, steps, g.run.prefill, run_start);
  if (jit_session) jit_session->finish(stderr);
  if (model_store) {
    state::RunRecord r{.compiles = jit_session ? jit_session->compiles() : 0,
                       .loaded = jit_session ? jit_session->loaded() : 0,
                       .time_to_first_token_s = timings.first_token_s,
                       .time_to_top_tier_s = jit_session ? jit_session->time_to_top_s() : -1,
                       .decode_tok_s = timings.decode_tok_s,
                       .compile_ms = jit_session ? jit_session->compile_ms() : 0};
    const std::vector<jit::UnitOutcome> units = jit_session ? jit_session->outcomes() : std::vector<jit::UnitOutcome>{};
    const std::string cpu = jit_session ? jit_session->target() : "";
    r = model_store->record(units, r, file_name_of(g.run.model_path), cpu,
                            cpu.empty() ? "" : native::format_cpu_features(native::host_cpu_features()));
    if (g.jit.trace)
      std::fprintf(stderr, "state: %s: run %" PRIu64 ", %" PRIu64 " compiles, %" PRIu64 " loaded, %s\n",
                   store->path().c_str(), r.run, r.compiles, r.loaded,
                   r.converged ? "converged" : model_store->model().moving.empty() ? "not yet converged"
                                                                                   : model_store->model().moving.c_str());
  }
  if (profiler) {
    const double run_secs = seconds_since(generate_start);
    if (g.profile) profiler->profiler().print(stderr, run_secs);
    if (profile_json) profile_json->write([&](FILE* f) { profiler->profiler().write_json(f, run_secs); });
  }
  return 0;
}

}  // namespace bf::cli

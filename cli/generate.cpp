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
#include "engine/model.h"
#include "engine/sampler.h"
#include "engine/tokenizer.h"
#include "engine/threadpool.h"
#include "engine/transformer.h"
#include "kernels/dispatch.h"
#include "jit/attach.h"
#include "profile/site_profiler.h"
#include "state/model_store.h"
#include "state/records.h"
#include "state/store.h"

namespace bf::cli {
namespace {

const char kUsage[] =
    "usage: bareflow generate [MODEL] [options]\n"
    "  MODEL, -m, --model PATH     llama2.c .bin (v0/v1/v2) or GGUF (v1-v3) model\n"
    "                              default: stories15M.bin, else stories260K.bin, searched in\n"
    "                              $BAREFLOW_MODELS, ./models, ../shared/models\n"
    "  -z, --tokenizer PATH        llama2.c tokenizer.bin (default: the GGUF's own vocabulary, else\n"
    "                              tokenizer.bin, or tok512.bin for 512-token models, beside the model)\n"
    "  -i, --prompt TEXT           prompt (default: empty)\n"
    "  -t, --temperature T         0 = greedy (default 1.0)\n"
    "  -p, --top-p P               nucleus sampling in [0,1]; 0 or 1 = off (default 0.9)\n"
    "  -s, --seed N                RNG seed (default: time)\n"
    "  -n, --steps N               positions including the prompt; 0 = the context length (default 256)\n"
    "  -T, --threads N             threads splitting matmul rows (default: online cores; 1 creates none)\n"
    "  --isa[=]ISA                 kernels: scalar, avx2, avx512 or auto (default: auto = best supported)\n"
    "  --no-prefill                feed the prompt token by token instead of as one batch\n"
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

std::string dir_of(const std::string& p) {
  const size_t slash = p.rfind('/');
  return slash == std::string::npos ? "." : p.substr(0, slash);
}

// The default model: the first of the known names found on the search path.
std::string find_default_model() {
  std::vector<std::string> dirs;
  if (const char* env = std::getenv("BAREFLOW_MODELS"); env && *env) dirs.push_back(env);
  dirs.push_back("models");
  dirs.push_back("../shared/models");
  for (const char* name : {"stories15M.bin", "stories260K.bin"})
    for (const std::string& d : dirs)
      if (is_file(d + "/" + name)) return d + "/" + name;
  fail("no model given and none found",
       "looked for stories15M.bin and stories260K.bin in $BAREFLOW_MODELS, ./models and "
       "../shared/models. Download https://huggingface.co/karpathy/tinyllamas/resolve/main/stories15M.bin "
       "and https://github.com/karpathy/llama2.c/raw/master/tokenizer.bin into ./models, or pass a model path");
}

// The tokenizer file to read: -z, else none when the GGUF has its own vocabulary (""), else the
// llama2.c one beside the model.
std::string tokenizer_file(const Model& model, const std::string& flag_path) {
  if (!flag_path.empty() || model.vocab) return flag_path;
  const std::string guess =
      dir_of(model.path) + (model.config.vocab_size == 512 ? "/tok512.bin" : "/tokenizer.bin");
  if (!is_file(guess))
    fail(model.path, "has no embedded tokenizer and " + guess + " does not exist; pass -z TOKENIZER");
  return guess;
}

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

// The flags, as parsed (run.c's defaults).
struct Flags {
  std::string model_path, tokenizer_path, prompt;
  float temperature = 1.0f, topp = 0.9f;
  uint64_t seed = 0;
  long long steps = 256;
  bool profile = false;
  std::string profile_json;
  int threads = ThreadPool::default_threads();
  Isa isa = best_isa();
  bool prefill = true;
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
      std::fputs(jit_usage(), stdout);
      std::fputs(kUsageEnd, stdout);
      return false;
    } else if (f == "-m" || f == "--model") {
      g.model_path = a.value(f);
    } else if (f == "-z" || f == "--tokenizer") {
      g.tokenizer_path = a.value(f);
    } else if (f == "-i" || f == "--prompt") {
      g.prompt = a.value(f);
    } else if (f == "-t" || f == "--temperature") {
      const double t = parse_double(f, a.value(f));
      if (t < 0) fail(f, "temperature must be >= 0");
      g.temperature = float(t);
    } else if (f == "-p" || f == "--top-p") {
      const double p = parse_double(f, a.value(f));
      if (p < 0 || p > 1) fail(f, "top-p must be in [0, 1]");
      g.topp = float(p);
    } else if (f == "-s" || f == "--seed") {
      g.seed = parse_u64(f, a.value(f));
    } else if (f == "-n" || f == "--steps") {
      g.steps = parse_int(f, a.value(f), 0, 1ll << 30);
    } else if (f == "-T" || f == "--threads") {
      g.threads = int(parse_int(f, a.value(f), 1, 256));
    } else if (f == "--isa" || f.rfind("--isa=", 0) == 0) {
      g.isa = parse_isa("--isa", f == "--isa" ? a.value(f) : f.substr(6));
    } else if (f == "--no-prefill") {
      g.prefill = false;
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
    } else if (!f.empty() && f[0] == '-') {
      fail(f, "unknown flag (see bareflow generate --help)");
    } else if (g.model_path.empty()) {
      g.model_path = f;
    } else {
      fail(f, "unexpected argument: the model is already " + g.model_path);
    }
  }
  if (g.model_path.empty()) g.model_path = find_default_model();
  if (g.seed == 0) g.seed = uint64_t(std::time(nullptr));  // run.c: 0 means "from the clock"
  return true;
}

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// run.c's loop: the prompt (as one batch unless --no-prefill), then sampling, each piece streamed to
// stdout as it is decoded; the tok/s lines go to stderr.
struct Timings {
  double first_token_s = 0;  // from run_start (the command's start) until the first sampled piece was written
  double decode_tok_s = 0;   // after the first step, as printed
};

Timings generate(Transformer& transformer, const Model& model, const Tokenizer& tokenizer, Sampler& sampler,
                 const std::vector<int>& tokens, int steps, bool prefill, Clock::time_point run_start) {
  Timings timings;
  Clock::time_point start;
  const Clock::time_point loop_start = Clock::now();
  int token = tokens[0];
  int pos = 0;
  // Prompt positions whose logits are not needed run as one batch; the cache comes out identical.
  const int batch = prefill ? std::min(steps, int(tokens.size()) - 1) : 0;
  if (batch > 0) {
    transformer.prefill(tokens.data(), batch, 0);
    const double secs = seconds_since(loop_start);
    std::fprintf(stderr, "prefill tok/s: %f\n", secs > 0 ? batch / secs : 0.0);
  }
  const int first_timed = batch + 1;
  while (pos < steps) {
    float* logits = pos < batch ? nullptr : transformer.forward(token, pos);
    // Feed the prompt, then sample.
    const int next = pos + 1 < int(tokens.size()) ? tokens[size_t(pos) + 1] : sampler.sample(logits);
    pos++;
    // run.c stops only at BOS (TinyStories models delimit stories with it) and prints EOS as text;
    // GGUF vocabularies declare their EOS, and llama.cpp users expect generation to end there.
    if (next == tokenizer.bos() || (model.vocab && next == tokenizer.eos())) break;
    const std::string piece = tokenizer.decode(token, next);
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
    if (timings.first_token_s == 0 && pos >= int(tokens.size())) timings.first_token_s = seconds_since(run_start);
    token = next;
    if (pos == first_timed) start = Clock::now();  // the first step includes warm-up; skip it, as run.c does
  }
  std::fputc('\n', stdout);
  std::fflush(stdout);
  if (pos > first_timed) {
    const double secs = seconds_since(start);
    timings.decode_tok_s = secs > 0 ? double(pos - first_timed) / secs : 0.0;
    std::fprintf(stderr, "achieved tok/s: %f\n", timings.decode_tok_s);
  }
  // From the command's start (model loading, the store and the JIT's warm start included).
  if (timings.first_token_s > 0) std::fprintf(stderr, "time to first token: %.4f s\n", timings.first_token_s);
  return timings;
}

// The store named by the flags, opened (created) for this run; null with --no-state or when no
// path is known. A store that cannot be used is refused with one line, as any bad input.
std::unique_ptr<state::Store> open_state(const Flags& g) {
  if (!g.use_state || g.state_path.empty()) return nullptr;
  state::Options o{.max_bytes = g.state_max, .fault = state::fault_plan_from_env()};
  std::unique_ptr<state::Store> s;
  try {
    state::make_parent_dirs(g.state_path);
    s = std::make_unique<state::Store>(state::Store::open(g.state_path, o));
  } catch (const Error& e) {
    if (g.state_named) throw;
    std::fprintf(stderr, "bareflow: note: running without a store: %s (--state FILE names another)\n",
                 e.message.c_str());
    return nullptr;
  }
  for (const std::string& p : s->problems()) std::fprintf(stderr, "bareflow: state: %s\n", p.c_str());
  return s;
}

std::string file_name_of(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace

int cmd_generate(int argc, char** argv) {
  const Clock::time_point run_start = Clock::now();
  Flags g;
  if (!parse_flags(argc, argv, g)) return 0;
  std::unique_ptr<OutputFile> profile_json;
  if (!g.profile_json.empty()) {
    profile_json = std::make_unique<OutputFile>("--profile-json", g.profile_json);
    profile_json->refuse_input(g.model_path, "model");
    profile_json->refuse_input(g.tokenizer_path, "tokenizer");
  }

  const std::unique_ptr<Model> model = load_model(g.model_path);
  const Config& c = model->config;
  const std::string tokenizer_path = tokenizer_file(*model, g.tokenizer_path);
  if (profile_json) profile_json->refuse_input(tokenizer_path, "tokenizer");
  const Tokenizer tokenizer = tokenizer_path.empty() ? Tokenizer::from_vocab(*model->vocab)
                                                     : Tokenizer::from_file(tokenizer_path, c.vocab_size);
  if (g.steps == 0 || g.steps > c.seq_len) {
    if (g.steps > c.seq_len)
      std::fprintf(stderr, "bareflow: note: -n %lld exceeds the context length; using %d\n", g.steps, c.seq_len);
    g.steps = c.seq_len;
  }
  const std::vector<int> tokens = tokenizer.encode(g.prompt, true, false, size_t(c.seq_len));

  Transformer transformer(*model, kernels_for(g.isa), g.threads, int(g.steps));
  Sampler sampler(c.vocab_size, g.temperature, g.topp, g.seed);
  std::unique_ptr<prof::SiteProfiler> profiler;
  if (g.profile || profile_json) {
    profiler = std::make_unique<prof::SiteProfiler>();
    transformer.set_matvec_observer(profiler.get());
  }
  const std::unique_ptr<state::Store> store = open_state(g);
  std::unique_ptr<state::ModelStore> model_store;
  if (store) {
    model_store = std::make_unique<state::ModelStore>(*store, state::model_identity(*model), stderr);
    // The store makes the JIT pay: from the second run on, nothing is compiled.
    if (!g.jit_given && jit::available()) g.jit.policy = jit::Policy::Tiered;
    g.jit.cache = model_store.get();
  }
  const std::unique_ptr<jit::Session> jit_session = jit::attach(transformer, g.jit, profiler.get());
  const Clock::time_point generate_start = Clock::now();
  const Timings timings = generate(transformer, *model, tokenizer, sampler, tokens, int(g.steps), g.prefill, run_start);
  if (jit_session) jit_session->finish(stderr);
  if (model_store) {
    state::RunRecord r{.compiles = jit_session ? jit_session->compiles() : 0,
                       .loaded = jit_session ? jit_session->loaded() : 0,
                       .time_to_first_token_s = timings.first_token_s,
                       .time_to_top_tier_s = jit_session ? jit_session->time_to_top_s() : -1,
                       .decode_tok_s = timings.decode_tok_s,
                       .compile_ms = jit_session ? jit_session->compile_ms() : 0};
    const std::vector<jit::UnitOutcome> units = jit_session ? jit_session->outcomes() : std::vector<jit::UnitOutcome>{};
    r = model_store->record(units, r, file_name_of(g.model_path));
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

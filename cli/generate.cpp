// bareflow generate: llama2.c run.c's generate loop and flags.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>
#include <vector>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/isa.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "engine/tokenizer.h"
#include "engine/threadpool.h"
#include "engine/transformer.h"
#include "kernels/dispatch.h"
#include "jit/cli.h"
#include "profile/site_profiler.h"

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
    "  --profile-json FILE         write them as JSON\n";
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

Tokenizer load_tokenizer(const Model& model, const std::string& tokenizer_path) {
  if (!tokenizer_path.empty()) return Tokenizer::from_file(tokenizer_path, model.config.vocab_size);
  if (model.vocab) return Tokenizer::from_vocab(*model.vocab);
  const std::string guess =
      dir_of(model.path) + (model.config.vocab_size == 512 ? "/tok512.bin" : "/tokenizer.bin");
  if (!is_file(guess))
    fail(model.path, "has no embedded tokenizer and " + guess + " does not exist; pass -z TOKENIZER");
  return Tokenizer::from_file(guess, model.config.vocab_size);
}

}  // namespace

int cmd_generate(int argc, char** argv) {
  std::string model_path, tokenizer_path, prompt;
  float temperature = 1.0f, topp = 0.9f;
  uint64_t seed = 0;
  long long steps = 256;
  bool profile = false;
  std::string profile_json;
  int threads = ThreadPool::default_threads();
  Isa isa = best_isa();
  bool prefill = true;
  jit::Cli jit;
  Args a{argc, argv};
  while (!a.done()) {
    const std::string f = a.next();
    if (f == "-h" || f == "--help") {
      std::fputs(kUsage, stdout);
      std::fputs(jit::kCliUsage, stdout);
      std::fputs(kUsageEnd, stdout);
      return 0;
    } else if (f == "-m" || f == "--model") {
      model_path = a.value(f);
    } else if (f == "-z" || f == "--tokenizer") {
      tokenizer_path = a.value(f);
    } else if (f == "-i" || f == "--prompt") {
      prompt = a.value(f);
    } else if (f == "-t" || f == "--temperature") {
      const double t = parse_double(f, a.value(f));
      if (t < 0) fail(f, "temperature must be >= 0");
      temperature = float(t);
    } else if (f == "-p" || f == "--top-p") {
      const double p = parse_double(f, a.value(f));
      if (p < 0 || p > 1) fail(f, "top-p must be in [0, 1]");
      topp = float(p);
    } else if (f == "-s" || f == "--seed") {
      seed = parse_u64(f, a.value(f));
    } else if (f == "-n" || f == "--steps") {
      steps = parse_int(f, a.value(f), 0, 1ll << 30);
    } else if (f == "-T" || f == "--threads") {
      threads = int(parse_int(f, a.value(f), 1, 256));
    } else if (f == "--isa" || f.rfind("--isa=", 0) == 0) {
      isa = parse_isa("--isa", f == "--isa" ? a.value(f) : f.substr(6));
    } else if (f == "--no-prefill") {
      prefill = false;
    } else if (f == "--profile") {
      profile = true;
    } else if (f == "--profile-json") {
      profile_json = a.value(f);
    } else if (jit.parse(f, a)) {
    } else if (!f.empty() && f[0] == '-') {
      fail(f, "unknown flag (see bareflow generate --help)");
    } else if (model_path.empty()) {
      model_path = f;
    } else {
      fail(f, "unexpected argument: the model is already " + model_path);
    }
  }
  if (model_path.empty()) model_path = find_default_model();
  if (seed == 0) seed = uint64_t(std::time(nullptr));  // run.c: 0 means "from the clock"

  const std::unique_ptr<Model> model = load_model(model_path);
  const Config& c = model->config;
  const Tokenizer tokenizer = load_tokenizer(*model, tokenizer_path);
  if (steps == 0 || steps > c.seq_len) {
    if (steps > c.seq_len)
      std::fprintf(stderr, "bareflow: note: -n %lld exceeds the context length; using %d\n", steps, c.seq_len);
    steps = c.seq_len;
  }
  const std::vector<int> tokens = tokenizer.encode(prompt, true, false, size_t(c.seq_len));

  Transformer transformer(*model, kernels_for(isa), threads, int(steps));
  Sampler sampler(c.vocab_size, temperature, topp, seed);
  std::unique_ptr<prof::SiteProfiler> profiler;
  if (profile || !profile_json.empty()) {
    profiler = std::make_unique<prof::SiteProfiler>();
    transformer.set_matvec_observer(profiler.get());
  }
  const std::unique_ptr<jit::Session> jit_session = jit.attach(transformer, profiler.get());
  using Clock = std::chrono::steady_clock;
  Clock::time_point start;
  const Clock::time_point loop_start = Clock::now();
  int token = tokens[0];
  int pos = 0;
  // Prompt positions whose logits are not needed run as one batch; the cache comes out identical.
  const int batch = prefill ? int(std::min<long long>(steps, (long long)tokens.size() - 1)) : 0;
  if (batch > 0) {
    transformer.prefill(tokens.data(), batch, 0);
    const double secs = std::chrono::duration<double>(Clock::now() - loop_start).count();
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
    if (next == tokenizer.bos() || (model->vocab && next == tokenizer.eos())) break;
    const std::string piece = tokenizer.decode(token, next);
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
    token = next;
    if (pos == first_timed) start = Clock::now();  // the first step includes warm-up; skip it, as run.c does
  }
  std::fputc('\n', stdout);
  std::fflush(stdout);
  if (pos > first_timed) {
    const double secs = std::chrono::duration<double>(Clock::now() - start).count();
    std::fprintf(stderr, "achieved tok/s: %f\n", secs > 0 ? double(pos - first_timed) / secs : 0.0);
  }
  if (jit_session) jit_session->finish(stderr);
  if (profiler) {
    const double run_secs = std::chrono::duration<double>(Clock::now() - loop_start).count();
    if (profile) profiler->profiler().print(stderr, run_secs);
    if (!profile_json.empty()) profiler->profiler().write_json(profile_json, run_secs);
  }
  return 0;
}

}  // namespace bf::cli

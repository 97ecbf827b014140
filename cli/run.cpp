#include "cli/run.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <new>

#include "cli/isa.h"

namespace bf::cli {

const char kRunUsage[] =
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
    "  --isa[=]ISA                 kernels: scalar, avx2, avx512, avxvnni or auto (default: auto = best supported)\n"
    "  --no-prefill                feed the prompt token by token instead of as one batch\n"
    "  --no-repack                 keep Q8_0/Q4_0 weights in the file's layout (default: repacked at\n"
    "                              load into 8-row blocks, the SIMD kernels' layout; same output)\n";

namespace {

std::string dir_of(const std::string& p) {
  const size_t slash = p.rfind('/');
  return slash == std::string::npos ? "." : p.substr(0, slash);
}

}  // namespace

std::string self_executable(const char* who) {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) fail(who, "cannot find this executable's file (/proc/self/exe)");
  return std::string(buf, size_t(n));
}

std::string file_name_of(const std::string& path) { return path.substr(path.rfind('/') + 1); }

int report_errors(int (*body)(int, char**), int argc, char** argv) {
  try {
    return body(argc, argv);
  } catch (const Error& e) {
    std::fprintf(stderr, "bareflow: %s\n", printable(e.message).c_str());
    return 2;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "bareflow: out of memory\n");
    return 2;
  }
}

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

std::string tokenizer_file(const Model& model, const std::string& flag_path) {
  if (!flag_path.empty() || model.vocab) return flag_path;
  const std::string guess =
      dir_of(model.path) + (model.config.vocab_size == 512 ? "/tok512.bin" : "/tokenizer.bin");
  if (!is_file(guess))
    fail(model.path, "has no embedded tokenizer and " + guess + " does not exist; pass -z TOKENIZER");
  return guess;
}

bool parse_model_flag(const std::string& f, Args& a, RunFlags& r) {
  if (f == "-m" || f == "--model") {
    r.model_path = a.value(f);
  } else if (f == "-z" || f == "--tokenizer") {
    r.tokenizer_path = a.value(f);
  } else if (f == "-T" || f == "--threads") {
    r.threads = int(parse_int(f, a.value(f), 1, 256));
  } else if (f == "--isa" || f.rfind("--isa=", 0) == 0) {
    r.isa = parse_isa("--isa", f == "--isa" ? a.value(f) : f.substr(6));
  } else if (f == "--no-prefill") {
    r.prefill = false;
  } else if (f == "--no-repack") {
    r.repack = false;
  } else if (!f.empty() && f[0] != '-' && r.model_path.empty()) {
    r.model_path = f;
  } else if (!f.empty() && f[0] != '-') {
    fail(f, "unexpected argument: the model is already " + r.model_path);
  } else {
    return false;
  }
  return true;
}

bool parse_run_flag(const std::string& f, Args& a, RunFlags& r) {
  if (parse_model_flag(f, a, r)) {
    return true;
  } else if (f == "-i" || f == "--prompt") {
    r.prompt = a.value(f);
  } else if (f == "-t" || f == "--temperature") {
    const double t = parse_double(f, a.value(f));
    if (t < 0) fail(f, "temperature must be >= 0");
    r.temperature = float(t);
  } else if (f == "-p" || f == "--top-p") {
    const double p = parse_double(f, a.value(f));
    if (p < 0 || p > 1) fail(f, "top-p must be in [0, 1]");
    r.topp = float(p);
  } else if (f == "-s" || f == "--seed") {
    r.seed = parse_u64(f, a.value(f));
  } else if (f == "-n" || f == "--steps") {
    r.steps = parse_int(f, a.value(f), 0, 1ll << 30);
  } else {
    return false;
  }
  return true;
}

std::unique_ptr<Model> load_run_model(const RunFlags& r) {
  std::unique_ptr<Model> m = load_model(r.model_path);
  if (r.repack) repack_weights(*m);
  return m;
}

void finish_run_flags(RunFlags& r) {
  if (r.model_path.empty()) r.model_path = find_default_model();
  if (r.seed == 0) r.seed = uint64_t(std::time(nullptr));  // run.c: 0 means "from the clock"
}

int clamp_steps(long long steps, const Config& c) {
  if (steps > c.seq_len)
    std::fprintf(stderr, "bareflow: note: -n %lld exceeds the context length; using %d\n", steps, c.seq_len);
  return steps == 0 || steps > c.seq_len ? c.seq_len : int(steps);
}

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

}  // namespace bf::cli

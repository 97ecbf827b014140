// What bareflow generate and the exported appliance share: run.c's flags, the default model and
// tokenizer, and the generate loop. Free of the JIT, the store and the profiler, which the
// appliance does not link.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "cli/args.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "engine/threadpool.h"
#include "engine/tokenizer.h"
#include "engine/transformer.h"
#include "kernels/dispatch.h"

namespace bf::cli {

// The usage lines of the flags in RunFlags.
extern const char kRunUsage[];

// run.c's flags, as parsed (run.c's defaults).
struct RunFlags {
  std::string model_path, tokenizer_path, prompt;
  float temperature = 1.0f, topp = 0.9f;
  uint64_t seed = 0;
  long long steps = 256;
  int threads = ThreadPool::default_threads();
  Isa isa = best_isa();
  bool prefill = true;
  bool repack = true;  // --no-repack: the kernels read the weights in the file's layout
};

// Consumes flag `f` (and its value from `a`) if it is one of RunFlags' or the model's path; false
// when it is something else (the caller's flag, or an error).
bool parse_run_flag(const std::string& f, Args& a, RunFlags& r);
// The same for the flags that pick the model and the engine only (-m/MODEL, -z, -T, --isa,
// --no-prefill), not a run's prompt, sampling or length: for commands such as serve.
bool parse_model_flag(const std::string& f, Args& a, RunFlags& r);
// load_model, then repack_weights unless --no-repack.
std::unique_ptr<Model> load_run_model(const RunFlags& r);
// After the flags: the default model when none was given, the seed from the clock when 0.
void finish_run_flags(RunFlags& r);

// The path of the running executable (/proc/self/exe); throws naming `who` if it cannot be read.
std::string self_executable(const char* who);
// "a/b/model.bin" -> "model.bin".
std::string file_name_of(const std::string& path);

// Runs `body`, the executable's whole job, turning a bf::Error or exhaustion into one stderr line
// "bareflow: ..." and exit status 2: the one place errors are printed, whatever a path, flag or
// model string held.
int report_errors(int (*body)(int, char**), int argc, char** argv);

// The first of stories15M.bin, stories260K.bin on the search path; throws naming where it looked.
std::string find_default_model();
// The tokenizer file to read: -z, else "" when the GGUF has its own vocabulary, else the llama2.c
// one beside the model.
std::string tokenizer_file(const Model& model, const std::string& flag_path);

// -n 0 or past the context: the context length (the latter with a note).
int clamp_steps(long long steps, const Config& c);

using Clock = std::chrono::steady_clock;
inline double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct Timings {
  double first_token_s = 0;  // from run_start (the command's start) until the first sampled piece was written
  double decode_tok_s = 0;   // after the first step, as printed
};

// run.c's loop: the prompt (as one batch unless --no-prefill), then sampling, each piece streamed
// to stdout as it is decoded; the tok/s lines go to stderr.
Timings generate(Transformer& transformer, const Model& model, const Tokenizer& tokenizer, Sampler& sampler,
                 const std::vector<int>& tokens, int steps, bool prefill, Clock::time_point run_start);

}  // namespace bf::cli

// bareflow bench: see bench/runner.h.
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "bench/runner.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/isa.h"
#include "engine/threadpool.h"
#include "cli/jit_flags.h"
#include "cli/run.h"

namespace bf::cli {
namespace {

const char kUsage[] =
    "usage: bareflow bench [options]\n"
    "Writes synthetic models of real shapes (deterministic random weights) to a temporary directory,\n"
    "loads them with the normal loader, and reports decode and prefill tok/s against the read\n"
    "bandwidth measured in the same run. Default set: stories15M and stories110M in F32, Q8_0 and\n"
    "Q4_0, and tinyllama-1.1b in Q8_0 and Q4_0.\n"
    "  --model-shape LIST   stories15M,stories42M,stories110M,tinyllama-1.1b\n"
    "                       (with --format only: stories15M,stories110M)\n"
    "  --format LIST        f32,f16,q8_0,q4_0 (with --model-shape only: f32,q8_0,q4_0)\n"
    "  -T, --threads LIST   thread counts (default: online cores)\n"
    "  --isa[=]ISA          scalar, avx2, avx512, avxvnni or auto (default: auto)\n"
    "  --runs N             timed runs per row, median reported (default 5)\n"
    "  --prompt N           prefill tokens per run (default 128)\n"
    "  --decode N           decode tokens per run (default 32)\n"
    "  --dir DIR            where the model files go (default: $TMPDIR, else /tmp)\n"
    "  --keep               leave the model files there (deleted by default)\n"
    "  --no-repack          kernels on the file's weight layout, not the repacked one\n"
    "  --jit                also decode with the JIT (every site compiled at O0, O1, O2, O3, and\n"
    "                       tiered once every site runs at O3): columns per tier, O3/AOT, the\n"
    "                       tiered run's seconds to O3 everywhere and its compile ms\n"
    "  --json               print one JSON array on stdout instead of the table\n"
    "  --peers [FLAGS]      instead: BareFlow against llama.cpp and llama2.c on the same files, built\n"
    "                       once into PEERS (default build/peers beside this executable) from\n"
    "                       ../shared/peers; FLAGS: --shapes, --formats, --threads, --rounds,\n"
    "                       --decode, --prefill, --isa, --json, --peers-dir PEERS (bench/tools/peers.py)\n"
    "  --serve [FLAGS]      instead: bareflow serve with 1, 4, 16 streaming clients: aggregate tok/s,\n"
    "                       first token p50/p99; FLAGS: --shape, --format, --threads, --parallel,\n"
    "                       --clients, --tokens, --duration, --json (bench/tools/serve_bench.py)\n"
    "  -h, --help\n";

// bench --peers and --serve: bench/tools/peers.py and serve_bench.py of the source tree this
// executable was built from (the peers built once by ../shared/peers/build.sh). Replaces this
// process.
int bench_script(const std::string& flag, int argc, char** argv, int first) {
  const bool peers_run = flag == "--peers";
  const std::string src = BF_SOURCE_DIR, self = self_executable(("bench " + flag).c_str());
  const std::string dir = self.substr(0, self.rfind('/') + 1);
  std::string peers = dir + "peers", tokenizer;
  std::vector<std::string> rest;
  for (int i = first; i < argc; i++) {
    if (peers_run && std::string(argv[i]) == "--peers-dir" && i + 1 < argc) peers = argv[++i];
    else rest.push_back(argv[i]);
  }
  for (const std::string& d : {std::string(std::getenv("BAREFLOW_MODELS") ? std::getenv("BAREFLOW_MODELS") : ""),
                               std::string("models"), src + "/../shared/models"})
    if (!d.empty() && is_file(d + "/tokenizer.bin")) {
      tokenizer = d + "/tokenizer.bin";
      break;
    }
  if (tokenizer.empty()) fail(flag, "no tokenizer.bin in $BAREFLOW_MODELS, ./models or ../shared/models");
  const std::string script = src + "/bench/tools/" + (peers_run ? "peers.py" : "serve_bench.py");
  const std::string build = src + "/../shared/peers/build.sh";
  if (!is_file(script)) fail(flag, script + " not found (bench " + flag + " runs from its source tree)");
  if (peers_run && !is_file(peers + "/llama-bench")) {
    if (!is_file(build)) fail(flag, "no peers in " + peers + " and no " + build + " to build them");
    std::fprintf(stderr, "bareflow: building the peers into %s (a few minutes, once)\n", peers.c_str());
    const std::string cmd = "'" + build + "' '" + peers + "'";
    if (std::system(cmd.c_str()) != 0) fail(flag, build + " failed");
  }
  std::vector<std::string> args = {"python3", script, self, dir + "bench/bench_synth_model", tokenizer};
  if (peers_run) args.push_back(peers);
  args.insert(args.end(), rest.begin(), rest.end());
  std::vector<char*> cargs;
  for (std::string& s : args) cargs.push_back(s.data());
  cargs.push_back(nullptr);
  execvp("python3", cargs.data());
  fail(flag, std::string("cannot run python3: ") + std::strerror(errno));
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

}  // namespace

int cmd_bench(int argc, char** argv) {
  bench::BenchOptions o;
  o.isa = best_isa();
  std::vector<std::string> shapes;
  std::vector<DType> formats;
  bool json = false;
  const char* tmp = std::getenv("TMPDIR");
  o.dir = tmp && *tmp ? tmp : "/tmp";
  Args a{argc, argv};
  if (argc > 1 && (std::string(argv[1]) == "--peers" || std::string(argv[1]) == "--serve"))
    return bench_script(argv[1], argc, argv, 2);
  while (!a.done()) {
    const std::string f = a.next();
    if (f == "-h" || f == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (f == "--model-shape") {
      for (const std::string& s : split_list(a.value(f))) shapes.push_back(bench::find_shape(f, s).name);
      if (shapes.empty()) fail(f, "empty list");
    } else if (f == "--format") {
      for (const std::string& s : split_list(a.value(f))) formats.push_back(bench::find_format(f, s));
      if (formats.empty()) fail(f, "empty list");
    } else if (f == "-T" || f == "--threads") {
      for (const std::string& s : split_list(a.value(f))) o.threads.push_back(int(parse_int(f, s, 1, 256)));
      if (o.threads.empty()) fail(f, "empty list");
    } else if (f == "--isa" || f.rfind("--isa=", 0) == 0) {
      o.isa = parse_isa("--isa", f == "--isa" ? a.value(f) : f.substr(6));
    } else if (f == "--runs") {
      o.runs = int(parse_int(f, a.value(f), 1, 1000));
    } else if (f == "--prompt") {
      o.prompt = int(parse_int(f, a.value(f), 1, 4096));
    } else if (f == "--decode") {
      o.decode = int(parse_int(f, a.value(f), 1, 4096));
    } else if (f == "--dir") {
      o.dir = a.value(f);
    } else if (f == "--keep") {
      o.keep = true;
    } else if (f == "--no-repack") {
      o.repack = false;
    } else if (f == "--jit") {
      // Each column is generate's --jit=MODE; a build without LLVM rejects the flag here.
      o.jit.clear();  // a repeated --jit must not add columns
      for (const char* mode : {"O0", "O1", "O2", "O3", "tiered"}) {
        jit::Options jo;
        parse_jit_flag(std::string("--jit=") + mode, a, &jo);
        o.jit.push_back({mode, jo});
      }
    } else if (f == "--json") {
      json = true;
    } else {
      fail(f, "unknown flag (see bareflow bench --help)");
    }
  }
  if (o.threads.empty()) o.threads.push_back(ThreadPool::default_threads());
  if (shapes.empty() && formats.empty()) {
    for (const char* s : {"stories15M", "stories110M"})
      for (DType t : {DType::F32, DType::Q8_0, DType::Q4_0}) o.models.emplace_back(s, t);
    for (DType t : {DType::Q8_0, DType::Q4_0}) o.models.emplace_back("tinyllama-1.1b", t);
  } else {
    if (shapes.empty()) shapes = {"stories15M", "stories110M"};
    if (formats.empty()) formats = {DType::F32, DType::Q8_0, DType::Q4_0};
    for (const std::string& s : shapes)
      for (DType t : formats) o.models.emplace_back(s, t);
  }
  const std::vector<bench::BenchResult> rows = bench::run_bench(o, stderr);
  if (json) {
    bench::print_json(stdout, rows);
  } else {
    bench::print_table(stdout, rows);
  }
  return 0;
}

}  // namespace bf::cli

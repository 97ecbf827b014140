// bareflow boot: runs `bareflow ARGS...` inside the BareFlow unikernel under QEMU. The booting is
// kernel/host/launch.h's; this file knows bareflow's own command line: which arguments name files
// the guest must be given (the model and the tokenizer). Every other argument reaches the guest
// byte for byte, even one that happens to name a host file. See kernel/README.md.
#include <cstdio>
#include <string>
#include <vector>

#include "cli/args.h"
#include "kernel/host/launch.h"

namespace bf::cli {
namespace {

// The flags of `generate` that take a value (cli/generate.cpp, jit/cli.cpp; keep in step): needed
// to tell its positional argument, the model, from a flag's value.
bool takes_value(const std::string& f) {
  for (const char* v : {"-m", "--model", "-z", "--tokenizer", "-i", "--prompt", "-t", "--temperature", "-p",
                        "--top-p", "-s", "--seed", "-n", "--steps", "-T", "--threads", "--isa", "--profile-json",
                        "--jit", "--jit-start", "--jit-thresholds", "--jit-fuse"})
    if (f == v) return true;
  return false;
}

// Marks the file arguments of `generate MODEL ...`, `MODEL ...` (main.cpp's shorthand) and
// `info MODEL`: the model (-m, or the first positional argument) and the tokenizer (-z).
// --profile-json names an output, which the guest cannot write: it stays text.
void mark_file_args(std::vector<boot::GuestArg>& args) {
  if (args.empty()) return;
  const std::string& cmd = args[0].text;
  size_t i = 1;
  if (cmd == "info") {
    for (; i < args.size(); ++i)
      if (args[i].text.empty() || args[i].text[0] != '-') return void(args[i].file = true);
    return;
  }
  if (cmd != "generate") {
    if (!is_file(cmd)) return;  // bench, --help, ...: no files
    args[0].file = true;
  }
  bool have_model = args[0].file;
  for (; i < args.size(); ++i) {
    const std::string& a = args[i].text;
    const bool model = a == "-m" || a == "--model", file = model || a == "-z" || a == "--tokenizer";
    if (takes_value(a)) {
      if (++i < args.size()) args[i].file = file;
      have_model |= model;
    } else if (!have_model && !a.empty() && a[0] != '-') {
      args[i].file = have_model = true;
    }
  }
}

}  // namespace

int cmd_boot(int argc, char** argv) {
  boot::Options o;
  bool help = false;
  const std::string err = boot::parse_flags(argc, argv, &o, &help);
  if (!err.empty()) throw Error(err);  // "bareflow: FLAG: problem", exit 2
  if (help) {
    std::fputs(boot::kUsage, stdout);
    return 0;
  }
  mark_file_args(o.args);
  return boot::launch(o, "bareflow boot");
}

}  // namespace bf::cli

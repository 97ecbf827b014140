// bareflow: the command-line entry point. Dispatches to the subcommands in cli/commands.h.
#include <cstdio>
#include <cstring>
#include <string>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/run.h"
#include "engine/error.h"

namespace {

struct Command {
  const char* name;
  int (*run)(int argc, char** argv);
  const char* summary;
};

const Command kCommands[] = {
    {"generate", bf::cli::cmd_generate, "generate text from a prompt (llama2.c run.c flags)"},
    {"info", bf::cli::cmd_info, "describe a model file: format, shapes, tensor types, bytes per token"},
    {"bench", bf::cli::cmd_bench, "decode/prefill tok/s on synthetic models vs the measured memory roofline"},
    {"boot", bf::cli::cmd_boot, "boot the BareFlow unikernel under QEMU and run bareflow ARGS inside it"},
    {"state", bf::cli::cmd_state, "the persistent store: show, verify, clear, report"},
    {"chat", bf::cli::cmd_chat, "a conversation in the terminal, one user turn per line"},
    {"serve", bf::cli::cmd_serve, "llama-server's HTTP API (OpenAI-compatible completions and chat) over one model"},
    {"export", bf::cli::cmd_export, "the converged code for one model and CPU as a small executable without LLVM"},
    {"coverage", bf::cli::cmd_coverage, "run a bareflow command with a breakpoint per function: which functions ran"},
};

void usage(FILE* out) {
  std::fprintf(out,
               "usage: bareflow <command> [args]   (bareflow <command> --help for its flags)\n"
               "       bareflow MODEL [generate flags]   same as bareflow generate MODEL ...\n\n"
               "commands:\n");
  for (const Command& c : kCommands) std::fprintf(out, "  %-10s %s\n", c.name, c.summary);
}

int dispatch(int argc, char** argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const std::string cmd = argv[1];
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    usage(stdout);
    return 0;
  }
  for (const Command& c : kCommands)
    if (cmd == c.name) return c.run(argc - 1, argv + 1);
  if (bf::cli::is_file(argv[1])) return bf::cli::cmd_generate(argc, argv);
  std::fprintf(stderr, "bareflow: unknown command '%s' (see bareflow --help)\n", bf::printable(argv[1]).c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) { return bf::cli::report_errors(dispatch, argc, argv); }

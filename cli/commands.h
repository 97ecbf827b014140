// The bareflow subcommands. Each returns the process exit status; errors are thrown as bf::Error
// and reported by main() as one line with status 2.
#pragma once

namespace bf::cli {

int cmd_generate(int argc, char** argv);
int cmd_info(int argc, char** argv);
int cmd_bench(int argc, char** argv);
int cmd_boot(int argc, char** argv);  // cli/boot.cpp (kernel/README.md)
int cmd_state(int argc, char** argv);  // cli/state.cpp (docs/STATE.md)
int cmd_export(int argc, char** argv);  // cli/export.cpp (docs/SHRINK.md)
int cmd_serve(int argc, char** argv);   // cli/serve.cpp (docs/SERVE.md)
int cmd_chat(int argc, char** argv);    // cli/chat.cpp (docs/SERVE.md)
int cmd_coverage(int argc, char** argv);  // cli/coverage.cpp (docs/SHRINK.md)

}  // namespace bf::cli

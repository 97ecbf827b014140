// The bareflow subcommands. Each returns the process exit status; errors are thrown as bf::Error
// and reported by main() as one line with status 2.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace bf::state {
class Store;
}

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

// The store at `path` (--state, or the default location), opened or created; null when `path` is
// "". One named by the user that cannot be used is an error (thrown); the default one only gets a
// note and null. cli/generate.cpp.
std::unique_ptr<state::Store> open_store(const std::string& path, bool named, uint64_t max_bytes);

}  // namespace bf::cli

// Loads the application ELF from its boot module into fresh user memory and enters it in ring 3.
#pragma once
#include <stdint.h>

namespace bf::kern {

// Never returns: the application ends with exit_group (or a fault). A module that is not a
// runnable static x86-64 executable is reported in one line and the machine exits with 255.
[[noreturn]] void app_run(int exe_index, unsigned argc, const char* const* argv);

// "name+0xoff" for an application address (fault reports), or "" when unknown. Not reentrant.
const char* app_symbol(uint64_t addr, bool is_return);

}  // namespace bf::kern

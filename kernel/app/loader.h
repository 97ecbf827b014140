// Loads the application ELF from its boot module into fresh user memory and enters it in ring 3.
#pragma once
#include <stdint.h>

namespace bf::kern {

// Never returns: the application ends with exit_group (or a fault). A module that is not a
// runnable static x86-64 executable is reported in one line and the machine exits with 255.
[[noreturn]] void app_run(int exe_index, unsigned argc, const char* const* argv);

// Before app_run: map the application's code with 4 KiB pages, so that app_report_code_pages()
// can tell from each page's accessed bit whether the CPU ever used it ("codepages" on the kernel
// command line, bareflow boot --code-pages).
void app_track_code_pages(bool on);
// At exit: how many of the code pages were used, and how many functions lie on used pages, for
// LLVM (mangled names in namespace llvm), bareflow (namespace bf) and the rest. An upper bound on
// what ran: a used page may hold functions that did not run. No-op unless tracking.
void app_report_code_pages();

// "name+0xoff" for an application address (fault reports), or "" when unknown. Not reentrant.
const char* app_symbol(uint64_t addr, bool is_return);

}  // namespace bf::kern

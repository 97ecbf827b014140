// The kernel command line: "[options] -- argv0 argv1 ...". Blanks separate words, "double quotes"
// group, a backslash escapes the next character. Host-testable (no kernel dependencies).
#pragma once
#include <stddef.h>

namespace bf::kern {

struct CmdlineOptions {
  bool strace = false;  // log every system call
  bool nosmep = false;  // leave CR4.SMEP off
  bool codepages = false;  // map the app's code with 4 KiB pages and report the ones it executed
};

// Splits s into words stored in buf (cap bytes); the words after "--" become argv (at most
// max_args). Words before "--" are options; unknown ones are ignored (QEMU prepends the kernel's
// file name). Returns nullptr or a one-line reason ("unterminated quote", ...).
const char* parse_cmdline(const char* s, char* buf, size_t cap, const char** argv, unsigned max_args,
                          unsigned* argc, CmdlineOptions* opts);

}  // namespace bf::kern

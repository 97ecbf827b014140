// The kernel command line, "[options] -- argv0 argv1 ...": blanks separate words, "double quotes"
// group, a backslash escapes the next character. And the argv module, which carries argv byte for
// byte instead (what `bareflow boot` uses). Host-testable (no kernel dependencies); the host
// launcher (kernel/host/launch.cpp) writes argv modules with these constants.
#pragma once
#include <stddef.h>
#include <stdint.h>

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

// The argv module: a boot module holding the application's argv, so that no boot loader quotes,
// expands ($ in GRUB) or truncates (4 KiB) it. Little-endian layout:
//   kArgvMagic (8 bytes), u32 argc (>= 1), u32 n = bytes of strings, then argc NUL-terminated
//   strings taking exactly n bytes; the module is exactly kArgvHeader + n bytes.
// The kernel recognizes it by its magic, whatever its name, and does not list it as a file.
constexpr char kArgvMagic[8] = {'\x7f', 'B', 'F', 'A', 'R', 'G', 'V', '1'};
constexpr size_t kArgvHeader = 16;

bool is_argv_module(const char* data, size_t size);
// Points argv[0..*argc) into data (which must stay put). Returns nullptr or a one-line reason.
const char* parse_argv_module(const char* data, size_t size, const char** argv, unsigned max_args, unsigned* argc);

}  // namespace bf::kern

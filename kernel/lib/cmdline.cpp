#include "kernel/lib/cmdline.h"

namespace bf::kern {
namespace {

bool eq(const char* a, const char* b) {
  while (*a && *a == *b) ++a, ++b;
  return *a == *b;
}

}  // namespace

const char* parse_cmdline(const char* s, char* buf, size_t cap, const char** argv, unsigned max_args,
                          unsigned* argc, CmdlineOptions* opts) {
  *argc = 0;
  size_t out = 0;
  bool app = false;
  for (size_t i = 0; s[i];) {
    while (s[i] == ' ' || s[i] == '\t' || s[i] == '\n') ++i;
    if (!s[i]) break;
    const size_t start = out;
    bool quoted = false;
    for (; s[i]; ++i) {
      if (out + 1 >= cap) return "command line too long";
      if (s[i] == '\\' && s[i + 1]) buf[out++] = s[++i];
      else if (s[i] == '"') quoted = !quoted;
      else if (!quoted && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n')) break;
      else buf[out++] = s[i];
    }
    if (quoted) return "unterminated quote";
    buf[out++] = 0;
    const char* w = buf + start;
    if (!app) {
      if (eq(w, "--")) app = true;
      else if (eq(w, "strace")) opts->strace = true;
      else if (eq(w, "nosmep")) opts->nosmep = true;
      else if (eq(w, "codepages")) opts->codepages = true;
      out = start;  // options are not kept
      continue;
    }
    if (*argc == max_args) return "too many arguments";
    argv[(*argc)++] = w;
  }
  return nullptr;
}

}  // namespace bf::kern

namespace bf::kern {
namespace {

uint32_t le32(const char* p) {
  const unsigned char* u = reinterpret_cast<const unsigned char*>(p);
  return uint32_t(u[0]) | uint32_t(u[1]) << 8 | uint32_t(u[2]) << 16 | uint32_t(u[3]) << 24;
}

}  // namespace

bool is_argv_module(const char* data, size_t size) {
  if (size < sizeof kArgvMagic) return false;
  for (size_t i = 0; i < sizeof kArgvMagic; ++i)
    if (data[i] != kArgvMagic[i]) return false;
  return true;
}

const char* parse_argv_module(const char* data, size_t size, const char** argv, unsigned max_args, unsigned* argc) {
  *argc = 0;
  if (!is_argv_module(data, size)) return "argv module: bad magic";
  if (size < kArgvHeader) return "argv module: truncated header";
  const uint32_t n = le32(data + 8), len = le32(data + 12);
  if (len != size - kArgvHeader) return "argv module: its size disagrees with its header";
  if (n == 0) return "argv module: no arguments (argv0 is needed)";
  if (n > max_args) return "argv module: too many arguments";
  const char* s = data + kArgvHeader;
  size_t start = 0;
  for (size_t i = 0; i < len; ++i) {
    if (s[i]) continue;
    if (*argc == n) return "argv module: more strings than its header says";
    argv[(*argc)++] = s + start;
    start = i + 1;
  }
  if (start != len) return "argv module: the last string is not terminated";
  if (*argc != n) return "argv module: fewer strings than its header says";
  return nullptr;
}

}  // namespace bf::kern

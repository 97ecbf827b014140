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
